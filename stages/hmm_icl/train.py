"""Train stage: a small Llama on one synthetic corpus, with the shared trainer.

The shard gate runs first: a corrupted shard (an id >= K, a wrong token count, a checksum
mismatch) raises ``GateFailure`` before a model is even built. Training windows are L + 1
tokens of the ``[SEP, seq, SEP, seq, ...]`` stream (see ``shards.lm_stream``); dev windows start
at multiples of L + 1, i.e. exactly at the separators, so the dev loss is the loss on whole
held-out sequences.
"""

from __future__ import annotations

import json

import pandas as pd

from harness.io import atomic_path, write_csv, write_json
from harness.runtime import checkpoint_dir, seed_everything, torch_threads
from harness.trainer import clear_checkpoint, train_lm
from stages.hmm_icl.configs import LmTrainConfig
from stages.hmm_icl.gates import check_shards
from stages.hmm_icl.lm import build_llama, count_parameters
from stages.hmm_icl.shards import lm_stream, read_manifest


def run(cfg: LmTrainConfig) -> None:
    with torch_threads(cfg.train.threads):
        _run(cfg)


def _run(cfg: LmTrainConfig) -> None:
    p = cfg.point
    reports = check_shards(cfg.shards_dir, f"synthetic/{p.tag}")
    print(f"shard gate passed: {sum(len(r['expectations']) for r in reports)} expectations", flush=True)
    manifest = read_manifest(cfg.shards_dir)
    k, length = int(manifest["emissions"]), int(manifest["seq_len"])
    if cfg.train.seq_len != length + 1:
        raise ValueError(f"train.seq_len must be L + 1 = {length + 1} (separator + sequence), got {cfg.train.seq_len}")
    separator = k
    train_ids = lm_stream(cfg.shards_dir, "train", separator)
    dev_ids = lm_stream(cfg.shards_dir, "val", separator)
    seed_everything(cfg.train.seed)
    model = build_llama(cfg.model, k, length + 1, cfg.train.seed)
    n_params = count_parameters(model)
    print(f"{p.tag}: Llama with {n_params:,} parameters on {len(train_ids):,} tokens"
          f" ({'permuted' if manifest['permute'] else 'plain'} emissions)", flush=True)
    ckpt = checkpoint_dir(cfg)
    result = train_lm(model, train_ids, dev_ids, cfg.train, ckpt_dir=ckpt, log=lambda m: print(m, flush=True))
    with atomic_path(cfg.out_dir) as tmp:
        tmp.mkdir()
        model.save_pretrained(tmp)
        (tmp / "lm.json").write_text(json.dumps({"emissions": k, "seq_len": length, "separator": separator,
                                                 "permute": manifest["permute"]}, indent=2) + "\n")
    write_csv(cfg.curve, pd.DataFrame(result.history))
    write_json(cfg.metrics, {"emissions": k, "hidden": p.hidden, "seq_len": length, "parameters": n_params,
                             **result.metrics()})
    clear_checkpoint(ckpt)
