"""Validation gates of the hmm_icl study (Great Expectations through ``harness.validation``).

Why per-sequence and per-shard summary frames rather than one row per token: the checks must
still see every token (each row carries the min and max id of its sequence/shard, computed
from the data read back from disk), but the frame stays small enough to validate a billion-token
synthetic corpus. A failing check raises ``GateFailure`` before anything is fitted or trained.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.validation import expect, run_gate

SPLITS = ("train", "val")


def sequence_frame(ids: np.ndarray) -> pd.DataFrame:
    """One row per sequence: its length and its smallest and largest id."""
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.shape[0] == 0:
        return pd.DataFrame({"min_id": pd.Series(dtype="int64"), "max_id": pd.Series(dtype="int64"),
                             "length": pd.Series(dtype="int64")})
    return pd.DataFrame({"min_id": ids.min(axis=1).astype(np.int64), "max_id": ids.max(axis=1).astype(np.int64),
                         "length": np.full(ids.shape[0], ids.shape[1], dtype=np.int64)})


def check_corpus(corpus_dir: str | Path) -> list[dict[str, Any]]:
    """Gate a corpus directory against its own manifest: ids < K, counts match, splits disjoint."""
    corpus_dir = Path(corpus_dir)
    manifest = json.loads((corpus_dir / "manifest.json").read_text())
    k, seq_len = int(manifest["emissions"]), int(manifest["seq_len"])
    reports = []
    for split in SPLITS:
        ids = np.load(corpus_dir / f"{split}.npy", mmap_mode="r")
        recorded = manifest["splits"][split]
        frame = sequence_frame(ids)
        reports.append(run_gate(f"hmm_icl/corpus/{split}", frame, [
            expect("ExpectTableRowCountToEqual", value=int(recorded["sequences"])),
            expect("ExpectColumnValuesToBeBetween", column="min_id", min_value=0, max_value=k - 1),
            expect("ExpectColumnValuesToBeBetween", column="max_id", min_value=0, max_value=k - 1),
            expect("ExpectColumnValuesToBeBetween", column="length", min_value=seq_len, max_value=seq_len),
            expect("ExpectColumnSumToBeBetween", column="length", min_value=int(recorded["tokens"]),
                   max_value=int(recorded["tokens"])),
        ]))
    blocks = pd.read_csv(corpus_dir / "blocks.csv", dtype={"split": str, "hash": str})
    train_hashes = sorted(set(blocks.loc[blocks["split"] == "train", "hash"]))
    val = blocks[blocks["split"] == "val"].reset_index(drop=True)
    reports.append(run_gate("hmm_icl/corpus/disjoint", val, [
        expect("ExpectColumnValuesToNotBeNull", column="hash"),
        expect("ExpectColumnValuesToNotBeInSet", column="hash", value_set=train_hashes),
    ]))
    return reports


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def shard_frame(shards_dir: str | Path, split: dict[str, Any]) -> pd.DataFrame:
    """One row per shard file: recorded vs actual token count, id range, checksum match.

    The actual count is the file size in ids, so a truncated or padded shard shows up even when
    its bytes happen to look like valid ids.
    """
    shards_dir = Path(shards_dir)
    dtype = np.dtype(split["dtype"])
    rows = []
    for shard in split["shards"]:
        path = shards_dir / shard["file"]
        size = path.stat().st_size if path.exists() else 0
        actual = size // dtype.itemsize
        data = np.memmap(path, dtype=dtype, mode="r", shape=(actual,)) if actual else np.zeros(0, dtype)
        rows.append({
            "file": shard["file"],
            "expected_count": int(shard["count"]),
            "actual_count": int(actual),
            "whole_ids": bool(size % dtype.itemsize == 0),
            "min_id": int(data.min()) if actual else -1,
            "max_id": int(data.max()) if actual else -1,
            "sha256_ok": bool(path.exists() and sha256_file(path) == shard["sha256"]),
        })
        del data
    return pd.DataFrame(rows)


def check_shards(shards_dir: str | Path, name: str) -> list[dict[str, Any]]:
    """Gate every split of a synthetic corpus against its manifest before anything trains on it."""
    shards_dir = Path(shards_dir)
    manifest = json.loads((shards_dir / "manifest.json").read_text())
    k = int(manifest["emissions"])
    reports = []
    for split_name, split in sorted(manifest["splits"].items()):
        frame = shard_frame(shards_dir, split)
        expected_total = int(split["sequences"]) * int(split["seq_len"])
        reports.append(run_gate(f"hmm_icl/{name}/{split_name}", frame, [
            expect("ExpectTableRowCountToEqual", value=len(split["shards"])),
            expect("ExpectColumnPairValuesToBeEqual", column_A="actual_count", column_B="expected_count"),
            expect("ExpectColumnSumToBeBetween", column="actual_count", min_value=expected_total,
                   max_value=expected_total),
            expect("ExpectColumnValuesToBeInSet", column="whole_ids", value_set=[True]),
            expect("ExpectColumnValuesToBeBetween", column="min_id", min_value=0, max_value=k - 1),
            expect("ExpectColumnValuesToBeBetween", column="max_id", min_value=0, max_value=k - 1),
            expect("ExpectColumnValuesToBeInSet", column="sha256_ok", value_set=[True]),
        ]))
    return reports
