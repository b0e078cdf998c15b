"""CPU kernel pinning: every `harness run` process asks numpy/OpenBLAS/MKL/oneDNN/ATen for AVX2.

Why: the same clean clone reproduced 738 metrics beyond rtol 1e-4 on an AVX2-only machine,
while reruns on one machine are bitwise identical: the libraries pick SIMD kernels per CPU.

A worker (written to tmp_path) pins the way the CLI does, then runs a few steps of
``harness.trainer.train_lm`` on a tiny LSTM LM (oneDNN LSTM, MKL sgemm, ATen ops, AdamW) and three
sklearn/numpy regressor fits (Ridge, MLPRegressor, gradient boosting: OpenBLAS) on a fixed table.
It prints what the libraries report they use and sha256 hashes of the results.

What differs without the pin, measured on an AMD EPYC with AVX-512 (torch 2.13, numpy 2.4.6,
scikit-learn 1.9.1): OpenBLAS picks SkylakeX kernels instead of Haswell (numpy ``X.T @ X``,
``lstsq``, Ridge and MLPRegressor results change in the last bits), numpy's ``exp``/``log`` run
AVX-512 loops, ATen runs AVX512 kernels and oneDNN AVX-512 ones (the LSTM trainer's loss changes at
~1e-7), and MKL runs its AMD-specific (Zen) sgemm, which an Intel machine never runs.
``test_native_differs_where_the_cpu_has_avx512`` records that on machines with AVX-512.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

WORKER = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
from harness.runtime import cpu_kernel_settings, pin_cpu_kernels
pinned = pin_cpu_kernels()              # what `harness run` does before anything loads numpy
import hashlib
import numpy as np
import torch
from threadpoolctl import threadpool_limits

def h(a):
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]

out = {"pinned": pinned, "settings": cpu_kernel_settings(probe=True)}
if sys.argv[2:] == ["probe"]:
    print("RESULT " + json.dumps(out)); sys.exit(0)
torch.set_num_threads(1)

class TinyLstmLM(torch.nn.Module):
    def __init__(self, vocab=64, d=32):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d)
        self.lstm = torch.nn.LSTM(d, d, batch_first=True)
        self.head = torch.nn.Linear(d, vocab)
    def forward(self, x):
        return self.head(self.lstm(self.emb(x))[0])

from harness.trainer import TrainSettings, train_lm
torch.manual_seed(0)
model = TinyLstmLM()
ids = np.random.default_rng(0).integers(0, 64, size=3000).astype(np.uint16)
cfg = TrainSettings(steps=12, batch_size=4, seq_len=16, lr=3e-3, warmup_steps=2, seed=1, device="cpu",
                  threads=1, checkpoint_every=1000)
res = train_lm(model, ids[:2500], ids[2500:], cfg, log=lambda m: None).metrics()
out["trainer"] = {"dev_loss": repr(res["dev_loss"]), "train_loss": repr(res["train_loss"]),
                  "weights": h(torch.cat([p.detach().flatten() for p in model.parameters()]))}

from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.neural_network import MLPRegressor
rng = np.random.default_rng(0)
X = np.exp(rng.normal(size=(400, 24)) * 0.5)  # log-normal features, as the mixture table has
y = np.log(X[:, :6]).sum(1) + np.sin(X[:, 6]) + 0.1 * rng.normal(size=400)
with threadpool_limits(1):
    out["numpy"] = {"gram": h(X.T @ X), "lstsq": h(np.linalg.lstsq(X, y, rcond=None)[0]),
                    "exp_log": h(np.exp(np.log(X) * 1.37))}
    out["sklearn"] = {
        "ridge": h(Ridge(alpha=1.0).fit(X, y).predict(X)),
        "mlp": h(MLPRegressor(hidden_layer_sizes=(32,), max_iter=60, random_state=0).fit(X, y).predict(X)),
        "gbr": h(GradientBoostingRegressor(n_estimators=25, random_state=0).fit(X, y).predict(X)),
    }
print("RESULT " + json.dumps(out))
'''


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


FLAGS = _cpu_flags()
pytestmark = pytest.mark.skipif(not {"avx2", "fma"} <= FLAGS, reason="needs an x86-64 CPU with AVX2")


#: the worker runs the tests need: name -> (probe only?, extra environment)
RUNS = {
    "pinned": (False, {}),
    "pinned_again": (False, {"HARNESS_CPU_ISA": "avx2"}),  # explicit = the default, a fresh process
    "native": (False, {"HARNESS_CPU_ISA": "native"}),
    "user_set": (True, {"ATEN_CPU_CAPABILITY": "default", "OPENBLAS_CORETYPE": "Sandybridge"}),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    """Every worker run, started at once (each is single-threaded), with this process's kernel
    variables removed first so that only the run's own settings count."""
    from harness.runtime import CPU_ISA_ENV, CPU_PINNED_ENV, KERNEL_ENV_VARS

    worker = tmp_path_factory.mktemp("kernels") / "worker.py"
    worker.write_text(WORKER)
    base = {k: v for k, v in os.environ.items() if k not in (*KERNEL_ENV_VARS, CPU_ISA_ENV, CPU_PINNED_ENV)}
    procs = {name: subprocess.Popen([sys.executable, str(worker), str(REPO)] + (["probe"] if probe else []),
                                    env={**base, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, (probe, env) in RUNS.items()}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"{name}: {stdout[-3000:]}{stderr[-3000:]}"
        line = next(ln for ln in stdout.splitlines() if ln.startswith("RESULT "))
        out[name] = json.loads(line[len("RESULT "):])
    return out


def _results(out: dict) -> dict:
    return {f"{group}.{k}": v for group in ("trainer", "numpy", "sklearn") for k, v in out[group].items()}


def test_pin_is_applied_in_the_subprocess(runs):
    s = runs["pinned"]["settings"]
    assert s["isa"] == "avx2" and not s["late_imports"] and not s["overridden"]
    assert s["env"]["ATEN_CPU_CAPABILITY"] == "avx2" and s["env"]["OPENBLAS_CORETYPE"] == "Haswell"
    probe = s["probe"]
    assert probe["torch_cpu_capability"] == "AVX2"
    assert probe["openblas_coretypes"] == ["Haswell"]  # numpy's and scipy's OpenBLAS alike
    if "mkl_cbwr_branch" in probe:
        assert probe["mkl_cbwr_branch"] == "COMPATIBLE"
    assert not {t for t in probe["numpy_simd_targets"] if "V4" in t or "AVX512" in t}


def test_pinned_results_are_bitwise_identical_across_runs(runs):
    assert _results(runs["pinned"]) == _results(runs["pinned_again"])


def test_native_turns_the_pin_off(runs):
    s = runs["native"]["settings"]
    assert s["isa"] == "native" and s["env"] == {}
    if "avx512f" in FLAGS:
        assert s["probe"]["torch_cpu_capability"] == "AVX512"


def test_native_differs_where_the_cpu_has_avx512(runs):
    pinned, native = _results(runs["pinned"]), _results(runs["native"])
    differing = sorted(k for k in pinned if pinned[k] != native[k])
    print(f"without the pin, on this CPU: {differing or 'nothing'} differ")
    if "avx512f" not in FLAGS:
        pytest.skip("no AVX-512 here: native kernels are the pinned ones, nothing need differ")
    assert differing, "AVX-512 CPU: native kernels should round differently from the AVX2 pin somewhere"


def test_a_user_set_variable_wins_and_is_recorded(runs):
    s = runs["user_set"]["settings"]
    assert s["overridden"] == {"ATEN_CPU_CAPABILITY": "default", "OPENBLAS_CORETYPE": "Sandybridge"}
    assert s["probe"]["torch_cpu_capability"] == "DEFAULT"
    assert s["probe"]["openblas_coretypes"] == ["Sandybridge"]
    assert s["env"]["DNNL_MAX_CPU_ISA"] == "AVX2"  # the rest stays pinned


def test_pinning_loads_no_numpy_and_is_harmless_off_x86(monkeypatch):
    code = ("import sys, platform; platform.machine = lambda: 'aarch64'\n"
            "import harness.cli\n"
            "from harness.runtime import cpu_kernel_settings\n"
            "s = cpu_kernel_settings()\n"
            "assert 'numpy' not in sys.modules and 'torch' not in sys.modules, 'the CLI loaded numpy'\n"
            "assert s['isa'] == 'native' and s['env'] == {} and 'not x86-64' in s['notes'][0], s\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATEN_", "DNNL_", "MKL_", "OPENBLAS_", "NPY_"))}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr


def test_stage_log_line_records_the_choice(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_CPU")}
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", "no-such-stage"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert "[harness] cpu kernels: avx2 (ATEN_CPU_CAPABILITY=avx2" in proc.stdout
