"""``harness doctor``: does this machine compute the studies' numeric primitives bit for bit like the
machines whose tables are committed under ``machines/probe/``?

Each probe row hashes the bytes of one primitive's result (torch BLAS and elementwise kernels,
reductions, sampling, 20 optimizer steps of an MLP / transformer layer / LSTM, numpy, scipy
L-BFGS-B, scikit-learn regressors), computed under the project's kernel and thread pin, exactly as
a stage process would (the probe runs in a fresh ``harness`` subprocess, so the pin applies before
numpy and torch load). Two machines whose rows agree compute those primitives alike; a row that
differs names a primitive whose result depends on the CPU, and ``harness drift --perturb`` tells
whether the metrics it feeds survive that.

Adapted from ``../shared/xcpu/probe.py`` (the same primitives, the same seeds, the same hash:
its committed output on the Intel Xeon, ``machines/probe/intel-xeon-avx2.txt``, is compared
row for row).
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

PROBE_DIR = "machines/probe"


def _h(x) -> tuple[str, str]:
    import numpy as np
    import torch

    if isinstance(x, torch.Tensor):
        x = x.detach().contiguous().cpu().numpy()
    a = np.ascontiguousarray(np.asarray(x))
    return hashlib.sha256(a.tobytes()).hexdigest()[:16], repr(float(np.asarray(a, dtype=np.float64).sum()))


def probe_rows(threads: int = 1) -> list[tuple[str, str, str]]:
    """(name, sha256 prefix, float summary) per primitive, under the current process's pin."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    rows: list[tuple[str, str, str]] = []

    def probe(name: str, fn: Callable) -> None:
        try:
            rows.append((name, *_h(fn())))
        except Exception as exc:  # noqa: BLE001 - a primitive missing on this build is a row too
            rows.append((name, "error", type(exc).__name__))

    def g(seed=0):
        return torch.Generator().manual_seed(seed)

    def randn(*shape, dtype=torch.float32, seed=0):
        return torch.randn(*shape, generator=g(seed), dtype=dtype)

    probe("torch.randn", lambda: randn(1000))
    probe("torch.multinomial", lambda: torch.multinomial(torch.softmax(randn(64, 100), -1), 50, True, generator=g(1)))
    for n in (8, 64, 257, 1024):
        probe(f"torch.matmul.f32.{n}", lambda n=n: randn(n, n) @ randn(n, n, seed=1))
    probe("torch.matmul.f64.257", lambda: randn(257, 257, dtype=torch.float64) @ randn(257, 257, dtype=torch.float64, seed=1))
    probe("torch.addmm.f32", lambda: torch.addmm(randn(64), randn(32, 48), randn(48, 64, seed=2)))
    probe("torch.bmm.f32", lambda: torch.bmm(randn(4, 33, 40), randn(4, 40, 17, seed=3)))
    probe("torch.linear.f32", lambda: torch.nn.functional.linear(randn(16, 128, 96), randn(384, 96, seed=4)))
    x = randn(64, 1000)
    for op in ("exp", "log1p", "tanh", "sigmoid", "erf", "sin"):
        probe(f"torch.{op}", lambda op=op: getattr(torch, op)(x.abs() if op == "log1p" else x))
    probe("torch.silu", lambda: torch.nn.functional.silu(x))
    probe("torch.gelu", lambda: torch.nn.functional.gelu(x))
    probe("torch.softmax", lambda: torch.softmax(x, -1))
    probe("torch.log_softmax", lambda: torch.log_softmax(x, -1))
    probe("torch.layer_norm", lambda: torch.nn.functional.layer_norm(x, (1000,)))
    probe("torch.rms", lambda: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
    probe("torch.sum.f32", lambda: randn(1_000_003).sum())
    probe("torch.mean.dim", lambda: x.mean(0))
    probe("torch.cumsum.f32", lambda: torch.cumsum(randn(100_000), 0))
    probe("torch.logsumexp", lambda: torch.logsumexp(x, -1))
    probe("torch.cross_entropy", lambda: torch.nn.functional.cross_entropy(
        randn(512, 300), torch.randint(0, 300, (512,), generator=g(5))))

    def tiny_train(kind: str):
        torch.manual_seed(0)
        if kind == "mlp":
            model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.SiLU(), torch.nn.Linear(64, 10))
            xs, ys = randn(256, 32, seed=6), torch.randint(0, 10, (256,), generator=g(7))
            fwd = lambda: torch.nn.functional.cross_entropy(model(xs), ys)  # noqa: E731
        elif kind == "transformer":
            model = torch.nn.TransformerEncoderLayer(48, 4, 96, dropout=0.0, batch_first=True)
            xs = randn(8, 20, 48, seed=8)
            fwd = lambda: model(xs).pow(2).mean()  # noqa: E731
        else:
            model = torch.nn.LSTM(24, 40, batch_first=True)
            xs = randn(8, 30, 24, seed=9)
            fwd = lambda: model(xs)[0].pow(2).mean()  # noqa: E731
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
        for _ in range(20):
            opt.zero_grad()
            fwd().backward()
            opt.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    for kind in ("mlp", "transformer", "lstm"):
        probe(f"torch.train20.{kind}", lambda kind=kind: tiny_train(kind))

    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((257, 257)), rng.standard_normal((257, 257))
    probe("numpy.default_rng", lambda: np.random.default_rng(0).standard_normal(1000))
    probe("numpy.matmul.f64", lambda: A @ B)
    probe("numpy.matmul.f32", lambda: A.astype(np.float32) @ B.astype(np.float32))
    for op in ("exp", "log1p", "tanh", "sin"):
        probe(f"numpy.{op}", lambda op=op: getattr(np, op)(np.abs(A) if op == "log1p" else A))
    probe("numpy.sum", lambda: rng.standard_normal(1_000_003).sum())
    probe("numpy.linalg.solve", lambda: np.linalg.solve(A + 257 * np.eye(257), B[:, 0]))
    probe("numpy.linalg.lstsq", lambda: np.linalg.lstsq(A[:, :40], B[:, 0], rcond=None)[0])

    from scipy.optimize import minimize, rosen, rosen_der

    probe("scipy.lbfgsb", lambda: minimize(rosen, np.full(8, 1.3), jac=rosen_der, method="L-BFGS-B").x)
    import warnings

    from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingRegressor, RandomForestRegressor
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Ridge
    from sklearn.neural_network import MLPRegressor

    Xs = np.random.default_rng(1).random((300, 9))
    ys = Xs @ np.arange(1, 10) + np.sin(5 * Xs[:, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name, est in (("ridge", Ridge(alpha=1.0)),
                          ("hgb", HistGradientBoostingRegressor(max_iter=50, random_state=0)),
                          ("gb", GradientBoostingRegressor(n_estimators=50, random_state=0)),
                          ("rf", RandomForestRegressor(n_estimators=30, random_state=0, n_jobs=1)),
                          ("mlp", MLPRegressor(hidden_layer_sizes=(32,), max_iter=200, random_state=0))):
            probe(f"sklearn.{name}", lambda est=est: est.fit(Xs, ys).predict(Xs))
    return rows


def header_lines(threads: int) -> list[str]:
    """The probe file's header (same fields as ../shared/xcpu/probe.py's)."""
    import numpy as np
    import torch

    from harness.runtime import cpu_kernel_settings

    model = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "?")
    except OSError:
        pass
    pin = cpu_kernel_settings()
    return [f"# machine\t{platform.machine()}\t{platform.processor() or ''}", f"# cpu\t{model}",
            f"# torch\t{torch.__version__}\t{torch.backends.cpu.get_cpu_capability()}",
            f"# numpy\t{np.__version__}", f"# pin\t{pin['isa']}\t{pin['applied']}", f"# threads\t{threads}"]


def probe_text(threads: int = 1) -> str:
    """The full probe table of this process (call in a pinned process: ``harness doctor --probe-only``)."""
    rows = probe_rows(threads)
    return "\n".join(header_lines(threads) + ["\t".join(r) for r in rows]) + "\n"


def run_probe(root: Path, threads: int = 1, env: dict[str, str] | None = None) -> str:
    """The probe table from a fresh pinned ``harness`` process (as a stage would compute)."""
    cmd = [sys.executable, "-m", "harness.cli", "doctor", "--probe-only", "--threads", str(threads)]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"the probe failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def parse(text: str) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """(header fields, name -> (hash, summary)) of a probe table."""
    header, rows = {}, {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("\t")
        if line.startswith("#"):
            header[parts[0].lstrip("# ").strip()] = "\t".join(parts[1:]).strip()
        elif len(parts) >= 2:
            rows[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return header, rows


def compare(mine: str, theirs: str) -> list[str]:
    """The primitives whose bits differ (or that one side lacks), one readable line each."""
    _, a = parse(mine)
    _, b = parse(theirs)
    out = []
    for name in list(dict.fromkeys([*b, *a])):
        if name not in a or name not in b:
            out.append(f"{name}: only on {'this machine' if name in a else 'the committed one'}")
        elif a[name][0] != b[name][0]:
            out.append(f"{name}: bits differ (sum {b[name][1]} there, {a[name][1]} here)")
    return out


def committed_tables(root: Path) -> list[Path]:
    return sorted((root / PROBE_DIR).glob("*.txt"))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "machine"
