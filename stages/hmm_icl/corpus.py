"""Corpus stage: text file -> top-K word ids -> fixed-length train/val sequences, gated.

Outputs (``out_dir``): ``train.npy`` / ``val.npy`` (uint16, shape (n, L)), ``vocab.json``,
``blocks.csv`` (split and hash of every block, for the disjointness check) and
``manifest.json`` (recorded counts). The gate runs on the files as written, inside the atomic
temporary directory, so a corpus that fails it never appears at ``out_dir``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from harness.io import atomic_path, write_json
from stages.hmm_icl.configs import CorpusConfig
from stages.hmm_icl.gates import check_corpus
from stages.hmm_icl.text import (
    EOS_ID, UNK_ID, block_hash, build_vocabulary, is_validation, read_blocks, to_sequences, tokenize,
)


def build(cfg: CorpusConfig) -> dict:
    """Everything the corpus stage writes, as in-memory objects."""
    src = cfg.source
    blocks = read_blocks(src.path, src.boundary, src.marker, src.max_blocks)
    if len(blocks) < 2:
        raise ValueError(f"{src.path}: found {len(blocks)} block(s); need at least 2 to split train/val")
    digests = [block_hash(b) for b in blocks]
    splits = ["val" if is_validation(d, src.val_fraction) else "train" for d in digests]
    tokens = [tokenize(b) for b in blocks]
    vocab = build_vocabulary([t for t, s in zip(tokens, splits) if s == "train"], cfg.emissions)
    arrays, stats = {}, {}
    for split in ("train", "val"):
        ids = [vocab.encode(t) for t, s in zip(tokens, splits) if s == split]
        seqs = to_sequences(ids, cfg.seq_len)
        if len(seqs) == 0:
            raise ValueError(f"the {split} split has fewer than L = {cfg.seq_len} tokens; lower L or val_fraction")
        arrays[split] = seqs.astype(np.uint16)
        n_words = sum(len(t) for t in ids)
        stats[split] = {
            "blocks": len(ids), "words": n_words, "sequences": int(seqs.shape[0]), "tokens": int(seqs.size),
            "unk_rate": float(np.mean(seqs == UNK_ID)), "eos_rate": float(np.mean(seqs == EOS_ID)),
        }
    frame = pd.DataFrame({"split": splits, "hash": digests})
    return {"arrays": arrays, "stats": stats, "vocab": vocab.words, "blocks": frame}


def run(cfg: CorpusConfig) -> None:
    built = build(cfg)
    manifest = {"emissions": cfg.emissions, "seq_len": cfg.seq_len, "source": cfg.source.path,
                "dtype": "uint16", "splits": built["stats"]}
    for split, st in built["stats"].items():
        print(f"{split}: {st['blocks']} blocks, {st['words']} words -> {st['sequences']} x {cfg.seq_len}"
              f" (unk {st['unk_rate']:.1%})", flush=True)
    with atomic_path(cfg.out_dir) as tmp:
        tmp.mkdir()
        for split, arr in built["arrays"].items():
            np.save(tmp / f"{split}.npy", arr)
        (tmp / "vocab.json").write_text(json.dumps(built["vocab"], indent=0) + "\n")
        built["blocks"].to_csv(tmp / "blocks.csv", index=False, lineterminator="\n")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        reports = check_corpus(tmp)  # gate the files as written; failure leaves out_dir untouched
    print(f"gate passed: {sum(len(r['expectations']) for r in reports)} expectations", flush=True)
    write_json(cfg.metrics, {"emissions": cfg.emissions, "seq_len": cfg.seq_len, **{
        f"{split}_{key}": value for split, st in built["stats"].items() for key, value in st.items()}})
