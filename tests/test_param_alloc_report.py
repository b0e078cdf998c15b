"""The param_alloc report says in its first lines whether the grid answers its question."""

import pandas as pd

from stages.param_alloc.report import chance_tasks, unanswered_reasons


def _frame(**over) -> pd.DataFrame:
    base = {"tag": ["a", "b", "c"], "d_model": [64, 72, 80], "n_layers": [8, 6, 5], "d_ff": [170, 190, 210],
            "best_dev_ppl": [40.0, 41.0, 39.0], "stopped_early": [True, True, False], "seeds": [3, 3, 3]}
    base.update(over)
    return pd.DataFrame(base)


FINAL_OK = pd.DataFrame({"sst2_acc": [0.61, 0.58], "sst2_majority": [0.5, 0.5]})


def test_a_sound_grid_has_no_reasons():
    assert unanswered_reasons(_frame(), FINAL_OK) == []


def test_each_defect_is_named():
    bad = _frame(d_model=[64, 64, 80], n_layers=[8, 8, 18], d_ff=[170, 170, 210],
                 stopped_early=[False] * 3, seeds=[1, 1, 1])
    final = pd.DataFrame({"sst2_acc": [0.5, 0.5], "sst2_majority": [0.5, 0.5],
                          "rte_acc": [0.6, 0.5], "rte_majority": [0.5, 0.5]})
    text = " | ".join(unanswered_reasons(bad, final))
    assert "same shape: a, b" in text
    assert "depth ranges 8-18" in text
    assert "early stopping never fired" in text
    assert "one seed" in text
    assert chance_tasks(final) == ["sst2"] and "sst2" in text and "rte" not in text
