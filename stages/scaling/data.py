"""Embedded default data of the scaling study: a small byte-level text corpus for the width sweeps.

Why generated: the smoke width sweeps must run on a fresh clone with no network, and
``data.dvc`` must hash identically everywhere. ``random.Random`` with a fixed seed is stable
across Python versions and machines. The text mixes short templated sentences (local syntax a
narrow model learns quickly) with counting and addition facts ("17 plus 25 is 42", which need
more capacity), so wider models reach lower loss within a few hundred steps and the LR-vs-width
curves have something to show. Models read it as bytes (vocabulary 256), so no tokenizer is
needed; the ``full`` profile points the same reader at WikiText-2 by path.
"""

from __future__ import annotations

import random
from pathlib import Path

#: folder under data/ that generate() fills (tracked by data.dvc)
DATASET = "scaling"

SEED = 20250107
TRAIN_SENTENCES = 6000
DEV_SENTENCES = 600

SUBJECTS = ["the cat", "a dog", "the old man", "my sister", "the teacher", "a small bird", "the farmer",
            "our neighbour", "the child", "a tired horse", "the baker", "my friend"]
VERBS = ["sees", "likes", "chases", "finds", "helps", "watches", "follows", "carries", "paints", "feeds"]
OBJECTS = ["the ball", "a red apple", "the river", "an old boat", "the garden", "a blue kite", "the letter",
           "a warm loaf", "the lamp", "a quiet room"]
PLACES = ["in the morning", "near the hill", "after dinner", "by the sea", "in the rain", "at the market",
          "before school", "under the bridge"]


def _sentence(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind <= 1:
        return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(PLACES)}."
    if kind == 2:
        a, b = rng.randrange(0, 50), rng.randrange(0, 50)
        return f"{a} plus {b} is {a + b}."
    if kind == 3:
        start = rng.randrange(1, 90)
        return "count: " + " ".join(str(start + i) for i in range(rng.randrange(3, 7))) + "."
    subject = rng.choice(SUBJECTS)
    return f"when {subject} {rng.choice(VERBS)} {rng.choice(OBJECTS)}, {subject} is happy."


def corpus(n_sentences: int, seed: int) -> str:
    rng = random.Random(seed)
    lines, line = [], []
    for _ in range(n_sentences):
        line.append(_sentence(rng).capitalize())
        if rng.random() < 0.2:
            lines.append(" ".join(line))
            line = []
    if line:
        lines.append(" ".join(line))
    return "\n".join(lines) + "\n"


def generate(out_dir: Path) -> None:
    out_dir = Path(out_dir)
    (out_dir / "train.txt").write_text(corpus(TRAIN_SENTENCES, SEED), encoding="utf-8")
    (out_dir / "dev.txt").write_text(corpus(DEV_SENTENCES, SEED + 1), encoding="utf-8")
