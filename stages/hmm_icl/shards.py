"""Synthetic corpora on disk: uint16 memory-mapped shards plus a manifest.

Layout of a corpus directory::

    manifest.json            emissions, hidden, seq_len, seed, pool, start, and per split:
                             dtype, seq_len, sequences, tokens, shards [{file, rows, count, sha256}]
    train-00000.bin ...      raw uint16, row-major (rows, L): one sampled sequence per row
    pool.npy                 (finite pool) the (M, K) permutations the sequences were drawn from
    eval-perms.npy           (eval split, permuted corpora) the permutation of every sequence

Why raw ``.bin`` + manifest rather than ``.npy``: the manifest is the single record of shape
and count, so a truncated or padded shard is detectable from its size alone, and a reader can
``np.memmap`` any shard without trusting a header inside the file it is checking.

Why every batch has its own seed ``[seed, stream, shard, row]``: the bytes of a shard do not
depend on how many shards were written before it or on the process that wrote it, so a
resumed or parallel writer produces identical files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from stages.hmm_icl.gates import sha256_file
from stages.hmm_icl.sampler import HmmSampler

DTYPE = np.uint16
STREAMS = {"train": 0, "val": 1, "eval": 2}
POOL_FILE = "pool.npy"


def write_split(out_dir: Path, split: str, sampler: HmmSampler, n_sequences: int, seq_len: int, seed: int,
                batch: int, shard_sequences: int, pool: np.ndarray | None, keep_perms: bool = False,
                start: np.ndarray | None = None) -> dict[str, Any]:
    """Sample ``n_sequences`` into shards of ``shard_sequences`` rows, straight into memmaps.

    ``pool``: (M, K) permutations (M = 1 with the identity: no relabelling), or None for a
    fresh random permutation per sequence (the unbounded case).
    """
    out_dir = Path(out_dir)
    stream = STREAMS[split]
    shards = []
    identity = pool is not None and len(pool) == 1 and np.array_equal(pool[0], np.arange(sampler.k))
    permuted = not identity
    perms_all = (np.lib.format.open_memmap(out_dir / f"{split}-perms.npy", mode="w+", dtype=DTYPE,
                                           shape=(n_sequences, sampler.k)) if keep_perms and permuted else None)
    for s, first in enumerate(range(0, n_sequences, shard_sequences)):
        rows = min(shard_sequences, n_sequences - first)
        name = f"{split}-{s:05d}.bin"
        mm = np.memmap(out_dir / name, dtype=DTYPE, mode="w+", shape=(rows, seq_len))
        for b in range(0, rows, batch):
            m = min(batch, rows - b)
            rng = np.random.default_rng([seed, stream, s, b])
            _, perms, _ = sampler.sample(m, seq_len, rng, out=mm[b : b + m], permute=permuted,
                                         pool=None if identity else pool, start=start)
            if perms_all is not None:
                perms_all[first + b : first + b + m] = perms
        mm.flush()
        del mm
        shards.append({"file": name, "rows": rows, "count": rows * seq_len, "sha256": sha256_file(out_dir / name)})
    info: dict[str, Any] = {"dtype": np.dtype(DTYPE).name, "seq_len": seq_len, "sequences": n_sequences,
                            "tokens": n_sequences * seq_len, "shards": shards}
    if perms_all is not None:
        perms_all.flush()
        del perms_all
        info["perms"] = {"file": f"{split}-perms.npy", "sha256": sha256_file(out_dir / f"{split}-perms.npy")}
    return info


def read_manifest(corpus_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(corpus_dir) / "manifest.json").read_text())


def read_split(corpus_dir: str | Path, split: str, max_sequences: int | None = None) -> np.ndarray:
    """All (or the first ``max_sequences``) rows of a split as one (n, L) array."""
    corpus_dir = Path(corpus_dir)
    info = read_manifest(corpus_dir)["splits"][split]
    parts, have = [], 0
    for shard in info["shards"]:
        if max_sequences is not None and have >= max_sequences:
            break
        mm = np.memmap(corpus_dir / shard["file"], dtype=info["dtype"], mode="r", shape=(shard["rows"], info["seq_len"]))
        parts.append(np.array(mm))
        have += shard["rows"]
    out = np.concatenate(parts) if parts else np.zeros((0, info["seq_len"]), dtype=info["dtype"])
    return out[:max_sequences] if max_sequences is not None else out


def read_perms(corpus_dir: str | Path, split: str = "eval") -> np.ndarray | None:
    info = read_manifest(corpus_dir)["splits"][split]
    if "perms" not in info:
        return None
    return np.load(Path(corpus_dir) / info["perms"]["file"])


def read_pool(corpus_dir: str | Path) -> np.ndarray | None:
    """The (M, K) permutation pool of a corpus, or None for the unbounded case."""
    if read_manifest(corpus_dir).get("pool") is None:
        return None
    path = Path(corpus_dir) / POOL_FILE
    return np.load(path).astype(np.int64) if path.exists() else np.arange(read_manifest(corpus_dir)["emissions"])[None]


def lm_stream(corpus_dir: str | Path, split: str, separator: int) -> np.ndarray:
    """One flat id stream for the LM: ``[SEP, seq_1, SEP, seq_2, ...]`` (dtype int32).

    Why a separator: the trainer draws windows at random offsets, so windows straddle two
    independent sequences (with different permutations); the separator tells the model where
    its context resets. Windows of L + 1 tokens that start at a separator see exactly one
    whole sequence, which is how the ICL stage queries the model.
    """
    corpus_dir = Path(corpus_dir)
    info = read_manifest(corpus_dir)["splits"][split]
    length = info["seq_len"]
    out = np.empty((info["sequences"], length + 1), dtype=np.int32)
    out[:, 0] = separator
    row = 0
    for shard in info["shards"]:
        mm = np.memmap(corpus_dir / shard["file"], dtype=info["dtype"], mode="r", shape=(shard["rows"], length))
        out[row : row + shard["rows"], 1:] = mm
        row += shard["rows"]
        del mm
    return out.ravel()
