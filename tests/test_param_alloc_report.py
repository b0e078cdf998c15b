"""The param_alloc report says in its first lines whether the grid answers its question."""

import pandas as pd

from stages.param_alloc.report import caveats, chance_tasks, separation_lines, unanswered_reasons


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
    # a task at chance is flagged (and not plotted), not a reason the perplexity ranking fails
    assert chance_tasks(final) == ["sst2"] and "sst2" not in text
    flags = " | ".join(caveats(bad, final))
    assert "uninformative" in flags and "sst2" in flags and "rte" not in flags


def test_plateau_is_measured_not_inferred_from_early_stopping():
    still_falling = _frame(stopped_early=[0, 0, 0], plateaued=[3, 2, 3], late_gain_max=[0.004, 0.08, 0.002])
    (reason,) = unanswered_reasons(still_falling, FINAL_OK)
    assert "1 of 9 phase-1 runs had not reached a plateau" in reason and "8.0 %" in reason
    flat = _frame(stopped_early=[0, 0, 0], plateaued=[3, 3, 3], late_gain_max=[0.004, 0.008, 0.002])
    assert unanswered_reasons(flat, FINAL_OK) == []


def test_chance_is_a_binomial_test_when_the_task_size_is_known():
    # 55 of 100 against a 50 % majority: p = 0.18, still chance; 62 of 100: p = 0.01, informative
    lucky = pd.DataFrame({"sst2_acc": [0.55, 0.5], "sst2_majority": [0.5, 0.5], "sst2_n": [100, 100]})
    real = pd.DataFrame({"sst2_acc": [0.62, 0.5], "sst2_majority": [0.5, 0.5], "sst2_n": [100, 100]})
    assert chance_tasks(lucky) == ["sst2"] and chance_tasks(real) == []


def test_separation_lines_name_the_ties():
    ranking = {"all": [
        {"rank": 1, "embed_share": 0.3, "glu": 2.0, "p_vs_top1": None, "separable_from_top1": False,
         "separable_from_next": False, "p_vs_next": 0.4},
        {"rank": 2, "embed_share": 0.35, "glu": 2.0, "p_vs_top1": 0.4, "separable_from_top1": False,
         "separable_from_next": True, "p_vs_next": 0.001},
        {"rank": 3, "embed_share": 0.4, "glu": 4.0, "p_vs_top1": 0.002, "separable_from_top1": True,
         "separable_from_next": False, "p_vs_next": None}]}
    text = "\n".join(separation_lines(ranking))
    assert "Not separable from #1 (e30_g2_0): e35_g2_0 (p = 0.40)" in text
    assert "#1 e30_g2_0 vs #2 e35_g2_0 (p = 0.40)" in text and "e40_g4_0" not in text
