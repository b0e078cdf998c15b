"""Local parallel repro benchmark: the smoke profile from a clean cache, ``dvc repro`` vs
``harness repro -j 2``.

One copy of the repository (git-visible files, a fresh ``harness bootstrap`` for the embedded
data, compiled and committed, exactly as the tests' ``prepare_project`` builds it; no DVC cache,
no dvc.lock), duplicated into two fresh projects:

* baseline: plain sequential ``dvc repro`` (DVC's repo lock, one stage at a time; torch uses its
  default thread count, as a researcher's ``dvc repro`` would);
* ``harness repro -j <J>`` (default 2): the local process pool, a budget of J CPUs, each stage
  with OMP_NUM_THREADS = its planned cpus.

Prints both walls, the ratio (goal <= 0.6 on 2 cores), whether the two ``dvc.lock`` files are
byte-identical, and checks that ``dvc status`` is clean after the parallel run. Each copy runs
its own code (``PYTHONPATH`` = the copy), so edits to the checkout during a run do not leak in.

    python benchmarks/bench_local_repro.py                  # every study (~10+ min on 2 cores)
    python benchmarks/bench_local_repro.py hmm_icl scaling  # a subset of studies
    python benchmarks/bench_local_repro.py -j 4 ...
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import prepare_project, run  # noqa: E402

#: DVC's repro order (and so the order of dvc.lock entries) follows Python's set iteration, which
#: varies with the hash seed from one process to the next; fixed here so both runs plan alike
ENV = {"HARNESS_RUNNER": "local", "PYTHONHASHSEED": "0"}


def lock_differences(a: Path, b: Path) -> list[str]:
    """Stages whose lock entries differ, with the paths whose hashes differ."""
    import yaml

    sa, sb = yaml.safe_load(a.read_text())["stages"], yaml.safe_load(b.read_text())["stages"]
    found = []
    for name in sorted(set(sa) | set(sb)):
        if sa.get(name) == sb.get(name):
            continue
        paths = sorted({e["path"] for sec in ("deps", "outs") for e in (sa.get(name) or {}).get(sec, [])
                        if e not in (sb.get(name) or {}).get(sec, [])})
        found.append(f"{name}: {', '.join(paths) or 'entry'}")
    return found


def timed(root: Path, cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = run(cmd, root, env=ENV, timeout=7200)
    return time.perf_counter() - t0, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("studies", nargs="*", help="restrict to these studies (default: all specs)")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--keep", help="keep the two projects under this directory")
    args = parser.parse_args()
    studies = args.studies or None
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-local-repro-"))
    try:
        print(f"preparing a copy of the repo ({', '.join(studies) if studies else 'all studies'}) ...", flush=True)
        seq = prepare_project(tmp / "seq", studies)
        par = tmp / "par"
        shutil.copytree(seq, par, symlinks=True)
        stages = run(["dvc", "stage", "list", "--name-only"], seq).stdout.split()
        print(f"  {len(stages)} stages; timing sequential dvc repro ...", flush=True)
        t_seq, _ = timed(seq, ["dvc", "repro"])
        print(f"  dvc repro: {t_seq:.1f}s; timing harness repro -j {args.jobs} ...", flush=True)
        t_par, out = timed(par, ["harness", "repro", "-j", str(args.jobs)])
        status = run(["dvc", "status", "dvc.yaml"], par, env=ENV).stdout
        identical = (seq / "dvc.lock").read_bytes() == (par / "dvc.lock").read_bytes()
        differences = lock_differences(seq / "dvc.lock", par / "dvc.lock")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    summary = [ln for ln in out.splitlines() if ln.startswith("run ") and "recorded" in ln]
    print()
    print(f"studies: {', '.join(studies) if studies else 'all'}; {len(stages)} stages; smoke profile; clean cache")
    print(f"sequential dvc repro       : {t_seq:8.1f} s")
    print(f"harness repro -j {args.jobs:<10}: {t_par:8.1f} s   ({summary[-1] if summary else 'no summary'})")
    print(f"ratio                      : {t_par / t_seq:8.2f}   (goal <= 0.6 on 2 cores)")
    print(f"dvc.lock byte-identical    : {identical}")
    print(f"lock entries that differ   : {len(differences)}")
    for line in differences:  # timing outputs (latency, throughput) differ between any two runs
        print(f"    {line}")
    print(f"dvc status clean after -j  : {'Data and pipelines are up to date' in status}")


if __name__ == "__main__":
    main()
