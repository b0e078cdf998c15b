"""The validation gate before any training (Great Expectations).

Checks, per split: token count equals what the tokenizer stage recorded, every id is below the
vocabulary size, no null ids; per article: no empty or null text; across splits: no article of
dev/test also occurs in train (nor dev in test). Any failure raises ``GateFailure`` naming the
expectation, the split/column and the failing rows; the report is written only on success.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from harness.datagate import check_row_count
from harness.io import write_json
from harness.validation import expect, run_gate
from stages.param_alloc.configs import GateConfig


def check_tokens(tokens_dir: str | Path) -> list[dict]:
    tokens_dir = Path(tokens_dir)
    counts = json.loads((tokens_dir / "counts.json").read_text())
    vocab = int(counts["vocab_size"])
    reports = []
    for split in ("train", "dev", "test"):
        ids = np.load(tokens_dir / f"{split}.npy")
        frame = pd.DataFrame({"id": ids.astype(np.int64)})
        reports.append(run_gate(f"tokens/{split}", frame, [
            expect("ExpectTableRowCountToEqual", value=int(counts[f"{split}_tokens"])),
            expect("ExpectColumnValuesToNotBeNull", column="id"),
            expect("ExpectColumnValuesToBeBetween", column="id", min_value=0, max_value=vocab - 1),
        ]))
    return reports


def check_articles(corpus_dir: str | Path) -> list[dict]:
    articles = pd.read_parquet(Path(corpus_dir) / "articles.parquet")
    reports = [run_gate("articles", articles, [
        expect("ExpectColumnValuesToNotBeNull", column="text"),
        expect("ExpectColumnValueLengthsToBeBetween", column="text", min_value=1),
        expect("ExpectColumnValuesToBeInSet", column="split", value_set=["train", "dev", "test"]),
    ])]
    seen: set[str] = set()
    for split in ("train", "dev", "test"):
        part = articles[articles["split"] == split].reset_index(drop=True)
        check_row_count(f"articles/{split}", len(part), 1, column="split")  # 0 articles: nothing to learn
        if seen:
            reports.append(run_gate(f"articles/{split}-disjoint", part, [
                expect("ExpectColumnValuesToNotBeInSet", column="doc_hash", value_set=sorted(seen)),
            ]))
        seen |= set(part["doc_hash"])
    return reports


def run(cfg: GateConfig) -> None:
    reports = check_articles(cfg.corpus_dir) + check_tokens(cfg.tokens_dir)
    print(f"gate passed: {sum(len(r['expectations']) for r in reports)} expectations on {len(reports)} datasets")
    write_json(cfg.report, {"checks": reports})
