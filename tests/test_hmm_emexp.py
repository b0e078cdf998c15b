"""hmm_icl: the seed's EM experiments (update_freq scan, duplicated sequences) as a stage."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from stages.hmm_icl.configs import EmExperimentConfig, EmExperimentsSpec, EmSpec, GridPoint
from stages.hmm_icl.emexp import duplicated, run
from stages.hmm_icl.hmm import random_params
from stages.hmm_icl.sampler import HmmSampler


def test_duplicated_keeps_the_token_count_and_repeats_each_unique_sequence():
    x = np.arange(24).reshape(8, 3)
    d = duplicated(x, 4)
    assert d.shape == x.shape
    assert len({tuple(r) for r in d}) == 2 and all((d == r).all(1).sum() == 4 for r in x[:2])


def test_duplicates_must_include_the_unique_baseline():
    point = GridPoint(emissions=4, hidden=2, seq_len=5)
    with pytest.raises(ValidationError, match="include 1"):
        EmExperimentsSpec(point=point, duplicates=[2, 4], fit=EmSpec(epochs=1, batch_size=4))


@pytest.mark.parametrize("kind", ["update_freq", "duplicates"])
def test_em_experiment_stage_writes_one_row_per_setting(tmp_path, kind):
    truth = random_params(2, 4, np.random.default_rng(0), concentration=0.5)
    sampler = HmmSampler(truth)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    np.save(corpus / "train.npy", sampler.sample(64, 10, np.random.default_rng(1))[0])
    np.save(corpus / "val.npy", sampler.sample(16, 10, np.random.default_rng(2))[0])
    point = GridPoint(emissions=4, hidden=2, seq_len=10)
    ex = EmExperimentsSpec(point=point, update_freqs=[1, None], duplicates=[1, 4],
                           fit=EmSpec(epochs=2, batch_size=8, update_freq=2, torch_threads=1))
    cfg = EmExperimentConfig(kind=kind, point=point, experiments=ex, seed=0, corpus_dir=str(corpus),
                             metrics=str(tmp_path / "m.json"), table=str(tmp_path / "t.csv"))
    run(cfg)
    table = pd.read_csv(tmp_path / "t.csv")
    assert len(table) == 2 and (table["tokens"] == 640).all()
    if kind == "update_freq":
        # one M-step per mini-batch window: 8 batches of 8 -> 8 updates/epoch vs 1 for classic EM
        assert list(table["updates"]) == [16, 2]
    else:
        assert list(table["unique_sequences"]) == [64, 16]
    assert json.loads((tmp_path / "m.json").read_text())["kind"] == kind


def test_final_ce_table_keeps_each_vocabulary_apart(tmp_path):
    """A grid over two K values gets one heatmap row per (K, H), never a K-average."""
    from types import SimpleNamespace

    import pandas as pd

    from stages.hmm_icl.report import em_sections

    grid = pd.DataFrame([{"K": k, "H": h, "L": l, "hmm_final_ce": k + h / 100 + l / 10000}
                         for k in (16, 32) for h in (8, 16) for l in (32, 64)])
    text = "\n".join(em_sections(SimpleNamespace(em_tables=[]), grid, tmp_path))
    assert "32.08" in text and "16.08" in text      # one row per K; a K-average would read 24.08
    assert "24.08" not in text
    assert (tmp_path / "final_ce_heatmap.png").exists()
