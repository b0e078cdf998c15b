"""Word-level text processing: blocks, lower-cased tokens, a top-K vocabulary, fixed-length sequences.

Why word level with a small top-K vocabulary: the HMMs have K categorical emissions and the
forward-backward cost grows with K * H, so the study works with K of a few hundred words (the
original lab notes used the top 100-500 TinyStories words). Everything outside the top K maps
to ``<unk>``; the end of every block is marked with ``<eos>`` so the HMM sees story boundaries.

Why the split is decided by a hash of the block text: identical blocks (TinyStories repeats
stock sentences such as "The moral of the story is ...") always fall in the same split, so the
train/validation disjointness the gate checks holds by construction, independent of order.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EOS, UNK = "<eos>", "<unk>"
SPECIALS = (EOS, UNK)
EOS_ID, UNK_ID = 0, 1

#: common UTF-8-read-as-cp1252 artefacts and typographic quotes in the TinyStories dumps
_NORMALISE = {"â€™": "'", "â€˜": "'", "â€œ": '"', "â€\x9d": '"', "â€": '"', "’": "'", "‘": "'", "“": '"', "”": '"'}
TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)*|[.,!?;:\"]")


def normalise(text: str) -> str:
    for bad, good in _NORMALISE.items():
        text = text.replace(bad, good)
    return text


def tokenize(text: str) -> list[str]:
    """Lower-cased words (contractions kept whole) and sentence punctuation as separate tokens."""
    return TOKEN_RE.findall(normalise(text).lower())


def read_blocks(path: str | Path, boundary: str = "blank_line", marker: str = "<|endoftext|>",
                max_blocks: int | None = None) -> list[str]:
    """Split a text file into blocks (stories or paragraphs) at blank lines or at a marker line."""
    from harness.datagate import read_text_checked

    text = read_text_checked(path, "hmm_icl/corpus source")  # refuses non-UTF-8 or empty text, naming lines
    if boundary == "marker":
        parts = text.split(marker)
    else:
        parts = re.split(r"\n\s*\n", text)
    blocks = [" ".join(p.split()) for p in parts]
    blocks = [b for b in blocks if b]
    return blocks[:max_blocks] if max_blocks else blocks


def block_hash(block: str) -> str:
    return hashlib.sha256(block.encode("utf-8")).hexdigest()


def is_validation(block_digest: str, val_fraction: float) -> bool:
    """Deterministic split: the first 8 hex digits of the hash as a uniform number in [0, 1)."""
    return int(block_digest[:8], 16) / 16**8 < val_fraction


@dataclass
class Vocabulary:
    words: list[str]

    @property
    def size(self) -> int:
        return len(self.words)

    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def encode(self, tokens: list[str]) -> list[int]:
        idx = self.index()
        return [idx.get(t, UNK_ID) for t in tokens]


def build_vocabulary(token_lists: list[list[str]], k: int) -> Vocabulary:
    """``<eos>``, ``<unk>`` and the K - 2 most frequent words (ties broken alphabetically)."""
    if k < len(SPECIALS) + 1:
        raise ValueError(f"K = {k} leaves no room for words beside {SPECIALS}")
    counts = Counter(t for tokens in token_lists for t in tokens)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    words = [w for w, _ in ranked[: k - len(SPECIALS)]]
    if len(words) < k - len(SPECIALS):
        raise ValueError(f"the training text has only {len(words)} distinct words; K = {k} needs {k - 2}")
    return Vocabulary(list(SPECIALS) + words)


def to_sequences(blocks_ids: list[list[int]], seq_len: int) -> np.ndarray:
    """Concatenate blocks, each followed by ``<eos>``, and cut into non-overlapping length-L rows.

    The tail shorter than L is dropped; shape (n, L), dtype int64.
    """
    stream: list[int] = []
    for ids in blocks_ids:
        stream.extend(ids)
        stream.append(EOS_ID)
    n = len(stream) // seq_len
    return np.asarray(stream[: n * seq_len], dtype=np.int64).reshape(n, seq_len)
