"""Stage ``scaling-corpus``: text files -> byte ids (vocabulary 256) for the width sweeps, gated.

Why bytes: the sweeps compare widths and parametrisations, not tokenizers; a byte vocabulary
keeps every model's embedding and readout identical in shape across the study and needs no
trained artefact. The gate checks, per split, that the id count equals the file's byte count,
that every id is a byte (0..255) and that a split is long enough for one training window.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from harness.io import atomic_path
from harness.validation import expect, run_gate
from stages.scaling.configs import CorpusConfig

VOCAB = 256


def encode(path: str | Path) -> np.ndarray:
    return np.frombuffer(Path(path).read_bytes(), dtype=np.uint8).copy()


def gate_ids(split: str, ids: np.ndarray, expected: int, min_len: int) -> dict:
    frame = pd.DataFrame({"id": ids.astype(np.int64)})
    return run_gate(f"scaling/corpus/{split}", frame, [
        expect("ExpectTableRowCountToEqual", value=int(expected)),
        expect("ExpectTableRowCountToBeBetween", min_value=int(min_len)),
        expect("ExpectColumnValuesToNotBeNull", column="id"),
        expect("ExpectColumnValuesToBeBetween", column="id", min_value=0, max_value=VOCAB - 1),
    ])


def run(cfg: CorpusConfig) -> None:
    counts, reports = {"vocab_size": VOCAB}, []
    arrays = {}
    for split, path in (("train", cfg.train), ("dev", cfg.dev)):
        ids = encode(path)
        reports.append(gate_ids(split, ids, Path(path).stat().st_size, cfg.min_tokens))
        arrays[split] = ids
        counts[f"{split}_tokens"] = int(len(ids))
    with atomic_path(cfg.out_dir) as tmp:  # the folder appears whole or not at all
        tmp.mkdir()
        for split, ids in arrays.items():
            np.save(tmp / f"{split}.npy", ids)
        (tmp / "counts.json").write_text(json.dumps(counts | {"gate": reports}, indent=2, sort_keys=True) + "\n")
    print(f"corpus: {counts['train_tokens']} train / {counts['dev_tokens']} dev byte ids, gate passed", flush=True)


def load_split(corpus_dir: str | Path, split: str) -> np.ndarray:
    return np.load(Path(corpus_dir) / f"{split}.npy")
