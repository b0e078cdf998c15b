"""Sample stage: synthetic corpora (train / val for the Llama, eval for ICL) from a fitted HMM.

The shards are gated (ids < K, counts and checksums match the manifest) as written, inside the
atomic temporary directory. Throughput is machine-dependent, so it goes to ``perf.json`` in the
cached output, never into the git-tracked metrics (which must be identical on every CPU run).
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from harness.io import atomic_path, write_json
from stages.hmm_icl.configs import SampleConfig
from stages.hmm_icl.forward import loglik_per_token
from stages.hmm_icl.gates import check_shards
from stages.hmm_icl.hmm import HmmParams
from stages.hmm_icl.pool import make_pool
from stages.hmm_icl.sampler import HmmSampler
from stages.hmm_icl.shards import POOL_FILE, read_perms, read_split, write_split


def unpermute(x: np.ndarray, perms: np.ndarray | None) -> np.ndarray:
    """The HMM's own emissions y from shown ids x = perm[y] (y = perm^-1[x])."""
    if perms is None:
        return np.asarray(x, dtype=np.int64)
    inverse = np.argsort(perms, axis=1)
    return np.take_along_axis(inverse, np.asarray(x, dtype=np.int64), axis=1)


def run(cfg: SampleConfig) -> None:
    p, s = cfg.point, cfg.synth
    params = HmmParams.load(Path(cfg.hmm_dir) / "hmm.npz")
    if (params.hidden, params.emissions) != (p.hidden, p.emissions):
        raise ValueError(f"{cfg.hmm_dir} holds H={params.hidden}, K={params.emissions}; expected {p.tag}")
    params = params.with_start(s.start)  # the sampler and the oracle share the start distribution
    sampler = HmmSampler(params)
    splits = {"train": s.train_sequences, "val": s.val_sequences, "eval": s.eval_sequences}
    size = cfg.permutations.pool
    pool = None if size is None else make_pool(p.emissions, size, cfg.seed)
    with atomic_path(cfg.out_dir) as tmp:
        tmp.mkdir()
        manifest = {"emissions": p.emissions, "hidden": p.hidden, "seq_len": p.seq_len, "seed": cfg.seed,
                    "pool": size, "permute": size != 1, "start": s.start, "splits": {}}
        if pool is not None:
            np.save(tmp / POOL_FILE, pool)
        t0 = time.perf_counter()
        for split, n in splits.items():
            manifest["splits"][split] = write_split(tmp, split, sampler, n, p.seq_len, cfg.seed, s.batch_sequences,
                                                    s.shard_sequences, pool, keep_perms=(split == "eval"))
            print(f"{split}: {n} x {p.seq_len} tokens in {len(manifest['splits'][split]['shards'])} shard(s)",
                  flush=True)
        seconds = time.perf_counter() - t0
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        check_shards(tmp, f"synthetic/{p.tag}")
        tokens = sum(n * p.seq_len for n in splits.values())
        perf = {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds if seconds else None,
                "batch_sequences": s.batch_sequences, "machine": platform.machine(), "python": platform.python_version()}
        (tmp / "perf.json").write_text(json.dumps(perf, indent=2, sort_keys=True) + "\n")
        y = unpermute(read_split(tmp, "eval"), read_perms(tmp, "eval"))
    print(f"sampled {tokens} tokens at {perf['tokens_per_s']:.3g} tokens/s", flush=True)
    write_json(cfg.metrics, {
        "emissions": p.emissions, "hidden": p.hidden, "seq_len": p.seq_len, "pool": size, "start": s.start,
        **{f"{split}_tokens": n * p.seq_len for split, n in splits.items()},
        "eval_oracle_ce_per_token": -loglik_per_token(params, y),
        "train_sha256": [sh["sha256"][:16] for sh in manifest["splits"]["train"]["shards"]],
    })
