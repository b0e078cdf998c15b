"""One EM iteration at H = E = 100 on 2,000 sequences x 50 tokens: the project's fit vs hmmlearn.

Same data (sampled from a random HMM), same starting parameters (``fit_em``'s own seeded
initialisation), one full-batch EM iteration each; prints seconds per iteration, the ratio
(goal: >= 10x hmmlearn's ``CategoricalHMM``), and checks that the E-step log-likelihoods agree
to 1e-6 relative and the updated parameters to 1e-6. hmmlearn takes ~45 s per iteration at this
size, so it runs for exactly one iteration; ``--pomegranate`` also times the reference backend.

    python benchmarks/bench_hmm_em.py [--hidden 100] [--emissions 100] [--sequences 2000] [--seq-len 50]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

GOAL_RATIO = 10.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--emissions", type=int, default=100)
    ap.add_argument("--sequences", type=int, default=2000)
    ap.add_argument("--seq-len", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch / BLAS threads (default 1: on a shared box two OpenMP threads spin and run ~10x slower)")
    ap.add_argument("--repeats", type=int, default=3, help="timed iterations of the project's fit (best kept)")
    ap.add_argument("--pomegranate", action="store_true", help="also time the pomegranate backend (slow)")
    args = ap.parse_args()
    os.environ.setdefault("NUMBA_DISABLE_JIT", "1")  # pomegranate's import-time numba kernels are unused

    from hmmlearn.hmm import CategoricalHMM

    from stages.hmm_icl.configs import EmSpec
    from stages.hmm_icl.em import fit_em
    from stages.hmm_icl.hmm import project, random_params
    from stages.hmm_icl.sampler import HmmSampler

    h, k, n, length = args.hidden, args.emissions, args.sequences, args.seq_len
    truth = random_params(h, k, np.random.default_rng(123), concentration=0.3)
    x = HmmSampler(truth).sample(n, length, np.random.default_rng(124))[0].astype(np.int64)
    seed = 0
    em64 = EmSpec(epochs=1, batch_size=n, update_freq=None, dtype="float64", torch_threads=args.threads)
    init = project(random_params(h, k, np.random.default_rng([seed, 0, 0]), em64.init_concentration), em64.floor)

    def timed(fn) -> tuple[float, float, object]:
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        return time.perf_counter() - w, time.process_time() - c, out

    # warm-up (torch/MKL initialisation, first allocations): one iteration on a slice, not timed
    fit_em(x[:200], None, h, k, em64, seed, log=lambda m: None)
    rows: dict[str, tuple[float, float]] = {}
    results = {}
    for dtype in ("float64", "float32"):
        em = em64.model_copy(update={"dtype": dtype})
        best = None
        for _ in range(args.repeats):
            wall, cpu, res = timed(lambda: fit_em(x, None, h, k, em, seed, log=lambda m: None))
            best = (wall, cpu) if best is None or wall < best[0] else best
        rows[f"project torch {dtype}"] = best
        results[dtype] = res
    if args.pomegranate:
        em = em64.model_copy(update={"backend": "pomegranate"})
        wall, cpu, _ = timed(lambda: fit_em(x, None, h, k, em, seed, log=lambda m: None))
        rows["project pomegranate float64"] = (wall, cpu)

    from threadpoolctl import threadpool_limits

    ref = CategoricalHMM(n_components=h, n_features=k, n_iter=1, tol=-np.inf, init_params="", params="ste",
                         implementation="scaling", random_state=0)
    ref.startprob_, ref.transmat_, ref.emissionprob_ = init.pi.copy(), init.A.copy(), init.B.copy()
    with threadpool_limits(args.threads):
        wall, cpu, _ = timed(lambda: ref.fit(x.reshape(-1, 1), lengths=[length] * n))
    rows["hmmlearn CategoricalHMM"] = (wall, cpu)
    ll_ref = float(ref.monitor_.history[0])

    print(f"one EM iteration, H={h} E={k}, {n} sequences x {length} tokens, {args.threads} thread(s)")
    print(f"  {'':30s} {'wall s':>9s} {'CPU s':>9s} {'ratio (wall)':>13s} {'ratio (CPU)':>12s}")
    ref_wall, ref_cpu = rows["hmmlearn CategoricalHMM"]
    for name, (wall, cpu) in rows.items():
        print(f"  {name:30s} {wall:9.3f} {cpu:9.3f} {ref_wall / wall:12.1f}x {ref_cpu / cpu:11.1f}x")
    print("  (ratio = hmmlearn time / this time; CPU time is what 1 dedicated core would take on a shared box)")
    for dtype, res in results.items():
        ll = res.history[0]["train_loglik_per_token"] * x.size
        rel = abs(ll - ll_ref) / abs(ll_ref)
        dparams = max(float(np.abs(res.params.A - ref.transmat_).max()),
                      float(np.abs(res.params.B - ref.emissionprob_).max()),
                      float(np.abs(res.params.pi - ref.startprob_).max()))
        wall, cpu = rows[f"project torch {dtype}"]
        ratio = min(ref_wall / wall, ref_cpu / cpu)
        print(f"{dtype}: log-likelihood {ll:.10g} vs hmmlearn {ll_ref:.10g}, relative difference {rel:.2e}"
              f" ({'ok' if rel <= 1e-6 else 'MISMATCH'} at 1e-6); max |parameter difference| {dparams:.1e};"
              f" goal >= {GOAL_RATIO:.0f}x: {'met' if ratio >= GOAL_RATIO else 'NOT met'} ({ratio:.1f}x)")


if __name__ == "__main__":
    main()
