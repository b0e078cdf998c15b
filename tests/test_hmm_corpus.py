"""hmm_icl step 1: word-level corpus, top-K vocabulary, fixed-length sequences, the corpus gate.

Uses the real TinyStories slice by path (never copied) and scikit-learn's CountVectorizer as an
independent reference for the word counts behind the top-K vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.validation import GateFailure
from stages.hmm_icl.configs import CorpusConfig, CorpusSource
from stages.hmm_icl.corpus import build, run
from stages.hmm_icl.gates import check_corpus
from stages.hmm_icl.text import EOS_ID, SPECIALS, TOKEN_RE, UNK_ID, read_blocks, to_sequences, tokenize

TINYSTORIES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tinystories" / "val.txt"
needs_tinystories = pytest.mark.skipif(not TINYSTORIES.exists(), reason="shared TinyStories slice not on this machine")


def test_tokenize_lowercases_and_splits_punctuation():
    assert tokenize('Once upon a time, Lily said, "Don’t go!"') == [
        "once", "upon", "a", "time", ",", "lily", "said", ",", '"', "don't", "go", "!", '"']


def test_to_sequences_marks_block_ends_and_drops_the_tail():
    seqs = to_sequences([[5, 6], [7], [8, 9, 10]], seq_len=3)
    # stream: 5 6 <eos> 7 <eos> 8 9 10 <eos> -> 9 tokens -> 3 rows
    assert seqs.tolist() == [[5, 6, EOS_ID], [7, EOS_ID, 8], [9, 10, EOS_ID]]
    assert to_sequences([[5, 6]], seq_len=4).shape == (0, 4)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> tuple[CorpusConfig, Path]:
    out = tmp_path_factory.mktemp("corpus")
    cfg = CorpusConfig(source=CorpusSource(path=str(TINYSTORIES), val_fraction=0.1), emissions=100, seq_len=64,
                       out_dir=str(out / "k100-l64"), metrics=str(out / "metrics.json"))
    run(cfg)
    return cfg, Path(cfg.out_dir)


@needs_tinystories
def test_vocabulary_is_top_k_by_an_independent_count(tiny_corpus):
    from sklearn.feature_extraction.text import CountVectorizer

    cfg, out = tiny_corpus
    built = build(cfg)
    train_blocks = [b for b, s in zip(read_blocks(TINYSTORIES), built["blocks"]["split"]) if s == "train"]
    from stages.hmm_icl.text import normalise

    vec = CountVectorizer(token_pattern=TOKEN_RE.pattern, lowercase=True, preprocessor=lambda s: normalise(s).lower())
    counts = np.asarray(vec.fit_transform(train_blocks).sum(axis=0)).ravel()
    names = vec.get_feature_names_out()
    order = sorted(range(len(names)), key=lambda i: (-counts[i], names[i]))
    expected = list(SPECIALS) + [names[i] for i in order[: cfg.emissions - 2]]
    vocab = json.loads((out / "vocab.json").read_text())
    assert vocab == expected
    assert {".", "the", "once", "upon"} <= set(vocab)


@needs_tinystories
def test_corpus_is_fixed_length_disjoint_and_counts_match(tiny_corpus):
    cfg, out = tiny_corpus
    manifest = json.loads((out / "manifest.json").read_text())
    blocks = pd.read_csv(out / "blocks.csv")
    assert len(blocks) == len(read_blocks(TINYSTORIES))
    assert not set(blocks.loc[blocks.split == "val", "hash"]) & set(blocks.loc[blocks.split == "train", "hash"])
    # ~10 % of the blocks go to validation (hash split), within a binomial 5 sigma
    n, frac = len(blocks), (blocks.split == "val").mean()
    assert abs(frac - 0.1) < 5 * np.sqrt(0.1 * 0.9 / n)
    for split in ("train", "val"):
        arr = np.load(out / f"{split}.npy")
        assert arr.dtype == np.uint16 and arr.shape[1] == cfg.seq_len
        assert arr.max() < cfg.emissions
        words = manifest["splits"][split]["words"] + manifest["splits"][split]["blocks"]  # + one <eos> per block
        assert arr.shape[0] == words // cfg.seq_len
        assert manifest["splits"][split]["tokens"] == arr.size
    train = np.load(out / "train.npy")
    assert 0 < (train == UNK_ID).mean() < 0.5 and (train == EOS_ID).any()


def _copy_corpus(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@needs_tinystories
def test_gate_rejects_id_out_of_range(tiny_corpus, tmp_path):
    _, out = tiny_corpus
    bad = _copy_corpus(out, tmp_path / "bad")
    arr = np.load(bad / "val.npy")
    arr[3, 5] = 100  # == K
    np.save(bad / "val.npy", arr)
    with pytest.raises(GateFailure, match="max_id"):
        check_corpus(bad)


@needs_tinystories
def test_gate_rejects_count_mismatch_and_overlap(tiny_corpus, tmp_path):
    _, out = tiny_corpus
    bad = _copy_corpus(out, tmp_path / "short")
    np.save(bad / "train.npy", np.load(bad / "train.npy")[:-1])
    with pytest.raises(GateFailure, match="expect_table_row_count_to_equal"):
        check_corpus(bad)
    leak = _copy_corpus(out, tmp_path / "leak")
    blocks = pd.read_csv(leak / "blocks.csv")
    blocks.loc[blocks.index[blocks.split == "train"][0], "hash"] = blocks.loc[blocks.split == "val", "hash"].iloc[0]
    blocks.to_csv(leak / "blocks.csv", index=False)
    with pytest.raises(GateFailure, match="expect_column_values_to_not_be_in_set"):
        check_corpus(leak)


def test_embedded_corpus_is_deterministic_and_readable(tmp_path):
    from stages.hmm_icl import data as tinystories_like

    tinystories_like.generate(tmp_path / "a")
    tinystories_like.generate(tmp_path / "b")
    a = (tmp_path / "a" / tinystories_like.FILE_NAME).read_bytes()
    assert a == (tmp_path / "b" / tinystories_like.FILE_NAME).read_bytes()
    blocks = read_blocks(tmp_path / "a" / tinystories_like.FILE_NAME)
    assert len(blocks) > 1000 and all("\n" not in b for b in blocks)
