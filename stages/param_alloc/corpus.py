"""Prepare: read WikiText-layout text files and split them into train/dev/test by article.

Why by article: splitting inside an article leaks its sentences across splits, which inflates
dev/test scores; the gate later checks that no article text occurs in two splits.
"""

from __future__ import annotations

import gzip
import hashlib
import random
import re
import tempfile
from pathlib import Path

import pandas as pd

from harness.datagate import read_text_checked
from harness.io import atomic_path
from harness.validation import GateFailure
from stages.param_alloc.configs import CorpusFiles, PrepareConfig

HEADING = re.compile(r"^ = [^=].* = $")


def read_corpus_text(path: str | Path) -> str:
    """The text of a corpus file, plain or gzip-compressed (``.gz``, as the published copies are).

    Either way it passes the same text gate (not UTF-8 or empty -> refused, lines named): a
    compressed file is unpacked to a temporary file of the same name first.
    """
    path = Path(path)
    if path.suffix != ".gz":
        return read_text_checked(path, "param_alloc/corpus")
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / path.stem
        plain.write_bytes(gzip.decompress(path.read_bytes()))
        return read_text_checked(plain, f"param_alloc/corpus ({path})")


def read_wikitext_articles(path: str | Path) -> list[str]:
    """Split a WikiText-format file into articles at top-level `` = Title = `` headings."""
    text = read_corpus_text(path)
    articles: list[list[str]] = []
    for line in text.splitlines():
        if HEADING.match(line):
            articles.append([line])
        elif articles:
            articles[-1].append(line)
        elif line.strip():
            articles.append([line])  # text before the first heading is its own article
    return [a for a in ("\n".join(lines).strip() for lines in articles) if a]


def split_articles(data: CorpusFiles) -> dict[str, list[str]]:
    """Assign articles to splits; a file shared by several splits is divided by ``fractions``.

    A missing file stops here with the split named: the full profile's training text is
    user-supplied, and a study must never quietly train on something else in its place.
    """
    missing = [f"data.files.{split}: {path} does not exist" for split, path in sorted(data.files.items())
               if not Path(path).exists()]
    if missing:
        # a gate failure (printed without a traceback, the stage fails, nothing is written); not
        # harness.spec's SpecError, whose import would make spec-parsing edits re-run this stage
        raise GateFailure("param_alloc/corpus", [{"summary": line} for line in missing + ["the param_alloc text files are named by path; a training split that is not "
                                   "shipped (WikiText-103 or WikiText-2 train, for the full profile) is user-supplied: "
                                   "download it and put it at that path, or point data.files.train at your copy "
                                   "(see docs/param_alloc.md)"]])
    by_file: dict[str, list[str]] = {}
    for split, path in data.files.items():
        by_file.setdefault(path, []).append(split)
    out: dict[str, list[str]] = {s: [] for s in data.files}
    for path, splits in sorted(by_file.items()):
        articles = read_wikitext_articles(path)
        if len(splits) == 1:
            out[splits[0]].extend(articles)
            continue
        order = list(range(len(articles)))
        random.Random(data.seed).shuffle(order)
        weights = [data.fractions[s] for s in splits]
        total = sum(weights)
        bounds, acc = [], 0.0
        for w in weights:
            acc += w / total
            bounds.append(round(acc * len(order)))
        start = 0
        for split, end in zip(splits, bounds):
            out[split].extend(articles[i] for i in sorted(order[start:end]))
            start = end
    return out


def doc_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run(cfg: PrepareConfig) -> None:
    splits = split_articles(cfg.data)
    rows = [{"split": s, "doc": i, "doc_hash": doc_hash(t), "text": t}
            for s in ("train", "dev", "test") for i, t in enumerate(splits.get(s, []))]
    frame = pd.DataFrame(rows, columns=["split", "doc", "doc_hash", "text"])
    for split in ("train", "dev", "test"):
        n = int((frame["split"] == split).sum())
        print(f"{split}: {n} articles, {sum(len(t.split()) for t in splits.get(split, []))} words", flush=True)
    with atomic_path(cfg.out_dir) as tmp:
        tmp.mkdir()
        frame.to_parquet(tmp / "articles.parquet", index=False)
