"""Tokenize: train a byte-level BPE on the train split (Hugging Face ``tokenizers``), encode all splits.

Why train on train only: a tokenizer fitted on dev/test leaks their vocabulary. The counts
recorded here are what the gate later re-derives and compares.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.io import atomic_path, write_json
from stages.param_alloc.configs import TokenizeConfig

SPECIAL = ["<|endoftext|>"]


def train_tokenizer(texts: list[str], vocab_size: int, min_frequency: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def encode_docs(tok, texts: list[str]) -> np.ndarray:
    """Concatenate documents with an end-of-text separator, as uint16 ids."""
    eot = tok.token_to_id(SPECIAL[0])
    ids: list[int] = []
    for enc in tok.encode_batch(texts):
        ids.extend(enc.ids)
        ids.append(eot)
    return np.asarray(ids, dtype=np.uint16)


def run(cfg: TokenizeConfig) -> None:
    articles = pd.read_parquet(f"{cfg.corpus_dir}/articles.parquet")
    train_texts = articles.loc[articles["split"] == "train", "text"].tolist()
    tok = train_tokenizer(train_texts, cfg.tokenizer.vocab_size, cfg.tokenizer.min_frequency)
    counts: dict[str, object] = {"vocab_size": tok.get_vocab_size()}
    with atomic_path(cfg.out_dir) as tmp:
        tmp.mkdir()
        tok.save(str(tmp / "tokenizer.json"))
        for split in ("train", "dev", "test"):
            texts = articles.loc[articles["split"] == split, "text"].tolist()
            ids = encode_docs(tok, texts)
            np.save(tmp / f"{split}.npy", ids)
            counts[f"{split}_tokens"] = int(len(ids))
            counts[f"{split}_docs"] = len(texts)
            print(f"{split}: {len(ids)} tokens", flush=True)
        write_json(tmp / "counts.json", counts)
