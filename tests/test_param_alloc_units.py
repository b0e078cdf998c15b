"""param_alloc pieces checked against independent references: the built model's own parameter
count, a real WikiText-2 file, GLUE-layout task files, the Great Expectations gate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, SHARED_DATA
from harness.validation import GateFailure
from stages.param_alloc import gate
from stages.param_alloc.configs import Allocation, ModelSpec, TaskSpec
from stages.param_alloc.corpus import read_wikitext_articles, split_articles
from stages.param_alloc.configs import CorpusFiles
from stages.param_alloc.model import build_checked, numel, build_model
from stages.param_alloc.solver import count_params, solve
from stages.param_alloc.tasks import read_task

GRID = [Allocation(embed_share=e, glu=g) for e in (0.25, 0.35, 0.45) for g in (2.0, 2.66, 3.0, 4.0)]


@pytest.mark.parametrize("target,vocab,heads,slack", [(10_000_000, 16000, 4, 0.05), (120_000, 1380, 1, 0.1)])
def test_solver_hits_target_within_half_percent_across_grid(target, vocab, heads, slack):
    spec = ModelSpec(target_params=target, n_heads=heads, d_ff_slack=slack)
    for alloc in GRID:
        shape = solve(alloc, spec, vocab)
        total = count_params(vocab, shape.d_model, shape.n_layers, shape.d_ff)
        assert abs(total - target) / target <= 0.005, (alloc, shape, total)
        assert abs(shape.d_ff / shape.d_model - alloc.glu) <= slack * alloc.glu + 1 / shape.d_model
        assert shape.d_model % (2 * heads) == 0
        if target == 10_000_000:  # at the studied size both axes are honoured closely
            assert abs(vocab * shape.d_model / total - alloc.embed_share) / alloc.embed_share < 0.05
            assert abs(shape.d_ff / shape.d_model - alloc.glu) / alloc.glu < 0.05


@pytest.mark.parametrize("alloc", [GRID[0], GRID[6], GRID[-1]])
def test_formula_equals_transformers_numel(alloc):
    """The closed form must equal sum(p.numel()) of the Llama that transformers builds."""
    spec = ModelSpec(target_params=120_000, n_heads=1, d_ff_slack=0.1)
    shape = solve(alloc, spec, 1500)
    model, counts = build_checked(shape, 0, spec.target_params, spec.tolerance)
    assert counts["actual_params"] == numel(model) == counts["solved_params"]
    untied = shape.model_copy(update={"tie_embeddings": False})
    assert numel(build_model(untied, 0)) == count_params(1500, shape.d_model, shape.n_layers, shape.d_ff, False)


def test_wikitext_loader_reads_real_wikitext2():
    path = SHARED_DATA / "wikitext-2" / "valid.txt"
    if not path.exists():
        pytest.skip(f"{path} not on this machine")
    articles = read_wikitext_articles(path)
    assert len(articles) == 60  # WikiText-2 validation has 60 articles
    assert articles[0].startswith("= Homarus gammarus =")
    words = sum(len(a.split()) for a in articles)
    assert 210_000 < words < 220_000  # README: 217k words
    files = CorpusFiles(files={"train": str(path), "dev": str(SHARED_DATA / "wikitext-2" / "test.txt"),
                               "test": str(SHARED_DATA / "wikitext-2" / "test.txt")},
                        fractions={"train": 0.0, "dev": 0.5, "test": 0.5})
    splits = split_articles(files)
    assert len(splits["train"]) == 60 and abs(len(splits["dev"]) - len(splits["test"])) <= 1
    assert not set(splits["dev"]) & set(splits["test"])


def test_glue_task_reader(tmp_path: Path):
    sst = tmp_path / "dev.tsv"
    sst.write_text('sentence\tlabel\nit \'s a "charming" journey .\t1\nunfunny and dull .\t0\n')
    ex = read_task(TaskSpec(name="sst2", format="sst2", path=str(sst)))
    assert [e.label for e in ex] == [1, 0] and ex[0].context.startswith("it 's a \"charming\"")
    rte = tmp_path / "rte.tsv"
    rte.write_text("index\tsentence1\tsentence2\tlabel\n0\tA b .\tA .\tentailment\n1\tC .\tD .\tnot_entailment\n")
    assert [e.label for e in read_task(TaskSpec(name="rte", format="rte", path=str(rte)))] == [1, 0]
    with pytest.raises(ValueError, match="lacks column"):
        read_task(TaskSpec(name="rte", format="rte", path=str(sst)))


def _corpus_and_tokens(tmp_path: Path, ids: dict[str, np.ndarray], counts: dict, texts: dict[str, list[str]]):
    corpus, tokens = tmp_path / "corpus", tmp_path / "tokens"
    corpus.mkdir()
    tokens.mkdir()
    rows = [{"split": s, "doc": i, "doc_hash": str(hash(t)), "text": t} for s, ts in texts.items()
            for i, t in enumerate(ts)]
    pd.DataFrame(rows).to_parquet(corpus / "articles.parquet")
    for split, arr in ids.items():
        np.save(tokens / f"{split}.npy", arr)
    (tokens / "counts.json").write_text(json.dumps(counts))
    return corpus, tokens


def _good(tmp_path):
    ids = {s: np.arange(n, dtype=np.uint16) % 100 for s, n in (("train", 500), ("dev", 50), ("test", 60))}
    counts = {"vocab_size": 100, "train_tokens": 500, "dev_tokens": 50, "test_tokens": 60}
    texts = {"train": ["a b", "c d"], "dev": ["e f"], "test": ["g h"]}
    return ids, counts, texts


def test_gate_passes_clean_data(tmp_path: Path):
    corpus, tokens = _corpus_and_tokens(tmp_path, *_good(tmp_path))
    assert len(gate.check_articles(corpus)) == 3 and len(gate.check_tokens(tokens)) == 3


def test_gate_blocks_id_above_vocab(tmp_path: Path):
    ids, counts, texts = _good(tmp_path)
    ids["dev"][[3, 7]] = 150
    _, tokens = _corpus_and_tokens(tmp_path, ids, counts, texts)
    with pytest.raises(GateFailure) as err:
        gate.check_tokens(tokens)
    msg = str(err.value)
    assert "tokens/dev" in msg and "expect_column_values_to_be_between" in msg and "2 of 50 rows" in msg
    assert "[3, 7]" in msg


def test_gate_blocks_count_mismatch(tmp_path: Path):
    ids, counts, texts = _good(tmp_path)
    counts["test_tokens"] = 61
    _, tokens = _corpus_and_tokens(tmp_path, ids, counts, texts)
    with pytest.raises(GateFailure, match=r"tokens/test.*\n.*expect_table_row_count_to_equal.*observed 60"):
        gate.check_tokens(tokens)


def test_gate_blocks_overlapping_splits_and_empty_rows(tmp_path: Path):
    ids, counts, texts = _good(tmp_path)
    texts["test"] = ["a b", ""]
    corpus, _ = _corpus_and_tokens(tmp_path, ids, counts, texts)
    with pytest.raises(GateFailure, match="1 of 5 rows fail; first rows \\[4\\]"):
        gate.check_articles(corpus)
    texts["test"] = ["a b"]
    shutil.rmtree(tmp_path / "corpus")
    shutil.rmtree(tmp_path / "tokens")
    corpus, _ = _corpus_and_tokens(tmp_path, ids, counts, texts)
    with pytest.raises(GateFailure, match=r"articles/test-disjoint.*\n.*doc_hash.*1 of 1 rows"):
        gate.check_articles(corpus)



def _param_alloc_spec(profile: str = "smoke", edit=None, tmp_path: Path | None = None):
    """The shipped param_alloc spec loaded for ``profile``, optionally edited (written to tmp_path)."""
    import yaml

    from harness.spec import load_params, load_spec
    from stages.param_alloc.study import STUDY

    path = REPO / "specs" / "param_alloc.yaml"
    if edit is not None:
        data = yaml.safe_load(path.read_text())
        edit(data)
        path = tmp_path / "param_alloc.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_spec(path, load_params(REPO / "params.yaml"), {"param_alloc": STUDY}, profile=profile)


def test_train_section_is_trainer_settings_minus_steps_and_seed(tmp_path):
    from harness.spec import SpecError
    from harness.trainer import TrainSettings

    item = _param_alloc_spec()
    stages = {s.name: s for s in item.plan()}
    cfg = stages["param_alloc-phase1-e25_g2_0"].config
    assert type(cfg.train) is TrainSettings
    t = item.spec.train
    assert cfg.train.steps == item.spec.phase1.tokens // (t.batch_size * t.seq_len)
    assert cfg.train.seed == item.spec.seed
    # every stage config round-trips through its JSON config file exactly
    for stage in stages.values():
        assert type(stage.config).model_validate(stage.config.model_dump(mode="json")) == stage.config
    for key in ("steps", "seed"):
        with pytest.raises(SpecError, match=key):
            _param_alloc_spec(edit=lambda d, key=key: d["train"].update({key: 5}), tmp_path=tmp_path)


def test_paths_are_declared_on_configs_and_follow_the_profile():
    from harness.study import declared_paths

    smoke = {s.name: s for s in _param_alloc_spec().plan()}
    paths = declared_paths(smoke["param_alloc-prepare"].config)
    assert {p for p, _ in paths["deps"]} == {"data/param_alloc/corpus.txt"}
    ev = declared_paths(smoke["param_alloc-eval-top1"].config)
    assert {p for p, _ in ev["deps"]} >= {"work/param_alloc/phase2/top1", "data/param_alloc/tasks/sst2.tsv"}
    assert [p for p, _ in ev["outs"]] == ["work/param_alloc/eval/top1"]
    prof = declared_paths(smoke["param_alloc-profile"].config)
    assert [p for p, _ in prof["deps"]] == ["work/param_alloc/shapes.json"]  # no task files
    full = {s.name: s for s in _param_alloc_spec("full").plan()}
    report = declared_paths(full["param_alloc-report"].config)
    assert [p for p, _ in report["outs_no_cache"]] == ["reports/full/param_alloc"]
    assert all(p.startswith(("work/full/", "metrics/full/")) for p, _ in report["deps"])
