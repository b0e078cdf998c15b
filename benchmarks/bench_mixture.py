"""mixture_sim benchmarks, each a ratio against a baseline measured in the same run.

1. Multiple-choice scoring: one right-padded batch per task (stages/mixture_sim/measure.py) vs
   scoring each (context + choice) sequence with its own forward pass (the obvious loop);
   target ratio > 1 (the batch is what keeps per-checkpoint measurement cheap).
2. Torch MLP regressor fit with 1 thread (stages/mixture_sim/threads.py) vs torch's default
   thread count. On an idle 2-core machine the two are close (measured 0.20 s vs 0.17 s with 2
   threads); on a busy one (load ~5) the default lost 10-100x (0.35 s vs 3.6-42 s), which is why
   the study pins 1 thread: predictable beats marginally faster.
3. Mixture search (stages/mixture_sim/search.py): one vectorised ``predict`` over every
   candidate vs one ``predict`` call per candidate (the obvious loop), for a HistGradientBoosting
   simulator on a RegMix-sized table (17 domains, 13 targets); target ratio > 1 (the batch is
   what makes RegMix's 100,000+ candidates affordable).

Run from the repo root with the venv active:  python benchmarks/bench_mixture.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_choice_scoring() -> None:
    import torch

    from stages.mixture_sim import data as mixture_domains
    from stages.mixture_sim.configs import LMShape
    from stages.mixture_sim.lm import build_model, read_tasks
    from stages.mixture_sim.measure import choice_logprobs

    model = build_model(LMShape(name="base", d_model=64, n_layers=2, n_heads=4, ffn=128), seed=0).eval()
    with tempfile.TemporaryDirectory() as tmp:
        mixture_domains.generate(Path(tmp))
        items = read_tasks(Path(tmp) / "tasks" / "hellaswag_style.jsonl", 32)

    def one_by_one() -> list[float]:
        out = []
        with torch.no_grad():
            for item in items:
                ctx = item["context"].encode()
                for choice in item["choices"]:
                    ids = torch.tensor([list(ctx + choice.encode())])
                    logp = torch.log_softmax(model(ids).logits.float(), -1)[0]
                    out.append(sum(float(logp[len(ctx) + i - 1, b]) for i, b in enumerate(choice.encode())))
        return out

    batched = [lp for row in choice_logprobs(model, items) for lp, _ in row]
    assert np.allclose(batched, one_by_one(), atol=1e-4)
    base = best_of(one_by_one)
    fast = best_of(lambda: choice_logprobs(model, items))
    print(f"choice scoring, {len(batched)} sequences: batched {fast * 1e3:.1f} ms vs one-by-one "
          f"{base * 1e3:.1f} ms (speed-up {base / fast:.1f}x)")


def bench_mlp_threads() -> None:
    import torch

    import stages.mixture_sim.mlp as mlp_module
    from stages.mixture_sim.mlp import TorchMLPRegressor
    from harness.runtime import torch_threads

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 9)), rng.normal(size=(300, 11))
    default_threads = torch.get_num_threads()
    one = statistics.median(best_of(lambda: TorchMLPRegressor(epochs=300).fit(x, y), 1) for _ in range(3))
    original = mlp_module.torch_threads
    mlp_module.torch_threads = lambda n: torch_threads(default_threads)
    try:
        many = statistics.median(best_of(lambda: TorchMLPRegressor(epochs=300).fit(x, y), 1) for _ in range(3))
    finally:
        mlp_module.torch_threads = original
    print(f"MLP fit (300 rows, 300 epochs): 1 thread {one:.2f}s vs {default_threads} threads {many:.2f}s "
          f"(speed-up {many / one:.1f}x)")


def bench_search_batch() -> None:
    from stages.mixture_sim.configs import FeatureSpec, TableSchema, TargetSpec
    from stages.mixture_sim.regressors import single_thread
    from stages.mixture_sim.simulator import fit_simulator

    rng = np.random.default_rng(0)
    schema = TableSchema(step=None, size=None, shape={}, domains=[f"d{i}" for i in range(17)],
                         targets=[TargetSpec(name=f"t{j}") for j in range(13)])
    x = rng.dirichlet(np.full(17, 0.5), size=512)
    y = np.log(x + 1e-3) @ rng.normal(size=(17, 13)) * 0.05 + 3.0
    params = {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 15, "min_samples_leaf": 20,
              "l2_regularization": 0.0}
    model, _ = fit_simulator(schema, FeatureSpec(), "hist_gradient_boosting", params, x, y, members=2, seed=0)
    cand = rng.dirichlet(np.full(17, 0.5), size=2000)
    with single_thread():  # as the search stage runs (one thread: OpenMP start-up per call would dominate)
        batch = best_of(lambda: model.predict(cand))
        loop = best_of(lambda: [model.predict(c[None, :]) for c in cand[:50]], repeats=1) * len(cand) / 50
    print(f"search predict, 2,000 candidates: batched {batch:.3f}s vs one call each {loop:.1f}s (extrapolated from "
          f"50; speed-up {loop / batch:.0f}x)")


if __name__ == "__main__":
    bench_choice_scoring()
    bench_mlp_threads()
    bench_search_batch()
