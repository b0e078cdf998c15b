"""Stage ``scaling-coord-<name>``: the μP coordinate check, SP and μP side by side.

``mup.coord_check.get_coord_data`` trains each width for a few AdamW steps on one fixed batch
and records, per module and step, the mean absolute coordinate of the module's output (l1).
For every (module, step) we fit log2(l1) against log2(width): the slope says how that
activation scales with width. The check, stated in the metrics:

* μP passes when no activation grows with width: every slope ≤ ``flat_tolerance``;
* SP is expected to fail it: its largest slope is reported (Adam updates make hidden outputs
  and logits grow roughly linearly in width, slope ≈ 1).

Slopes may be negative under μP at the first steps (its readout starts at the 1/width scale,
or at zero); those coordinates vanish rather than blow up, which μP allows. Modules whose
output is exactly zero at some width (a zero-initialised layer before its first update) have
no slope at that step and are skipped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.io import atomic_path, write_json
from harness.runtime import seed_everything, torch_threads
from stages.scaling.lmconfigs import CoordConfig


def coord_data(cfg: CoordConfig, parametrization: str, batch) -> pd.DataFrame:
    from mup.coord_check import get_coord_data

    from stages.scaling.models import build_model

    import torch

    # get_coord_data seeds torch with 0, 1, ... before each model; build from that seed
    models = {w: (lambda w=w: build_model(cfg.model, w, parametrization, seed=torch.initial_seed()))
              for w in cfg.widths}
    frame = get_coord_data(models, [batch], optimizer="adamw", lr=cfg.lr, mup=parametrization == "mup",
                           nsteps=cfg.steps, cuda=False, show_progress=False, flatten_output=True,
                           nseeds=cfg.seeds)
    frame = frame[frame["module"] != ""].copy()
    frame["parametrization"] = parametrization
    return frame


def slopes(frame: pd.DataFrame) -> pd.DataFrame:
    """Slope of log2(mean l1) vs log2(width), per module and step."""
    rows = []
    for (module, step), group in frame.groupby(["module", "t"], sort=True):
        size = group.groupby("width")["l1"].mean()
        if (size <= 0).any() or len(size) < 2:
            continue
        slope = np.polyfit(np.log2(size.index.to_numpy(float)), np.log2(size.to_numpy(float)), 1)[0]
        rows.append({"module": module, "t": int(step), "slope": float(slope)})
    return pd.DataFrame(rows, columns=["module", "t", "slope"])


def verdict(table: pd.DataFrame, tolerance: float) -> dict:
    worst = table.loc[table["slope"].idxmax()]
    return {"max_slope": float(worst["slope"]), "max_slope_module": str(worst["module"]),
            "max_slope_step": int(worst["t"]), "min_slope": float(table["slope"].min()),
            "no_growth": bool(worst["slope"] <= tolerance)}


def fixed_batch(cfg: CoordConfig):
    import torch

    from stages.scaling.corpus import load_split
    from harness.trainer import batch_starts, make_batch

    ids = load_split(cfg.corpus_dir, "train")
    x, y = make_batch(ids, batch_starts(0, 0, len(ids), cfg.batch_size, cfg.seq_len), cfg.seq_len)
    return x, y.reshape(-1).to(torch.long)


def run(cfg: CoordConfig) -> None:
    seed_everything(0)
    with torch_threads(cfg.cpu_threads):
        _run(cfg)


def _run(cfg: CoordConfig) -> None:
    from mup.coord_check import plot_coord_data

    batch = fixed_batch(cfg)
    frames, summary, figures = [], {}, {}
    for parametrization in ("sp", "mup"):
        frame = coord_data(cfg, parametrization, batch)
        table = slopes(frame)
        summary[parametrization] = verdict(table, cfg.flat_tolerance)
        frames.append(frame)
        figures[parametrization] = plot_coord_data(
            frame, legend=False, suptitle=f"{cfg.name} {parametrization.upper()}: mean |activation| vs width",
            face_color=None if parametrization == "mup" else "xkcd:light grey")
        print(f"coord check {cfg.name} {parametrization}: max slope {summary[parametrization]['max_slope']:+.2f} "
              f"({summary[parametrization]['max_slope_module']}, t={summary[parametrization]['max_slope_step']})",
              flush=True)
    data = pd.concat(frames, ignore_index=True)[["parametrization", "width", "module", "t", "l1"]]
    import matplotlib.pyplot as plt

    with atomic_path(cfg.out_dir) as tmp:  # data and figures appear together or not at all
        tmp.mkdir()
        data.to_csv(tmp / "coord.csv", index=False, float_format="%.8g", lineterminator="\n")
        for parametrization, fig in figures.items():
            fig.savefig(tmp / f"coord-{parametrization}.png", dpi=90, metadata={"Software": None}, bbox_inches="tight")
            plt.close(fig)
    write_json(cfg.metrics, {"tolerance": cfg.flat_tolerance, "widths": cfg.widths, "steps": cfg.steps, **summary,
                             "mup_flat": summary["mup"]["no_growth"], "sp_grows": not summary["sp"]["no_growth"]})
