"""Profile every solved grid shape: latency at batch 1, throughput, peak memory (machine-dependent)."""

from __future__ import annotations

import json
from pathlib import Path

from harness.io import atomic_path, write_json
from harness.runtime import device as pick_device
from harness.runtime import set_threads
from stages.param_alloc.configs import PROFILE_FILE, ProfileConfig, Shape
from stages.param_alloc.model import build_model
from stages.param_alloc.perf import profile


def run(cfg: ProfileConfig) -> None:
    set_threads(cfg.threads)
    table = json.loads(Path(cfg.shapes).read_text())
    device = pick_device("auto")
    rows = []
    for row in table["shapes"]:
        shape = Shape.model_validate({k: row[k] for k in Shape.model_fields})
        model = build_model(shape, seed=0).to(device).eval()
        perf = profile(model, shape.vocab_size, cfg.eval.latency_seq_lens, cfg.eval.latency_repeats,
                       cfg.eval.throughput_batch, cfg.eval.throughput_seq_len, device,
                       memory_batch=cfg.batch_size, memory_seq_len=cfg.seq_len)
        rows.append({"tag": row["tag"], **perf})
        print(f"{row['tag']}: {perf}", flush=True)
    with atomic_path(cfg.out_dir) as tmp:
        tmp.mkdir()
        write_json(tmp / PROFILE_FILE, {"device": device, "shapes": rows})
