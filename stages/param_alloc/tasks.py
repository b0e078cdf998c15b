"""Downstream classification tasks scored by likelihood, from GLUE-layout TSV files.

Why likelihood scoring: a 10M-parameter LM has no classification head; the standard zero-shot
protocol compares the log-probability the LM assigns to each verbaliser after a prompt. The
same reader takes real GLUE files (SST-2, RTE, MRPC dev.tsv; BoolQ as question/passage/label
TSV) by path, or the generated smoke tasks, which use the same layouts.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stages.param_alloc.configs import TaskSpec


@dataclass
class Example:
    context: str
    choices: list[str]
    label: int


def _truthy(value) -> int:
    return int(str(value).strip().lower() in ("1", "true", "yes", "entailment"))


def read_task(task: TaskSpec) -> list[Example]:
    path = Path(task.path)
    frame = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
    need = {"sst2": ["sentence", "label"], "rte": ["sentence1", "sentence2", "label"],
            "mrpc": ["Quality", "#1 String", "#2 String"], "boolq": ["question", "passage", "label"]}[task.format]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: task `{task.name}` ({task.format}) lacks column(s) {missing}; "
                         f"found {list(frame.columns)}")
    out: list[Example] = []
    for row in frame.itertuples(index=False):
        r = dict(zip(frame.columns, row))
        if task.format == "sst2":
            out.append(Example(f"{r['sentence']} It was", [" terrible", " great"], _truthy(r["label"])))
        elif task.format == "rte":
            out.append(Example(f"{r['sentence1']} Question: {r['sentence2']} True or False? Answer:",
                               [" False", " True"], _truthy(r["label"])))
        elif task.format == "mrpc":
            out.append(Example(f"{r['#1 String']} Question: does this mean the same as \"{r['#2 String']}\"? Answer:",
                               [" no", " yes"], _truthy(r["Quality"])))
        else:
            out.append(Example(f"{r['passage']} Question: {r['question']}? Answer:", [" no", " yes"],
                               _truthy(r["label"])))
    return out[: task.max_examples] if task.max_examples else out


def choice_logprob(model, tokenizer, context: str, choice: str, max_len: int) -> float:
    """Sum of log p(choice tokens | context) under the LM."""
    import torch

    ctx = tokenizer.encode(context).ids
    cont = tokenizer.encode(choice).ids
    ids = (ctx + cont)[-max_len:]
    n_cont = min(len(cont), len(ids) - 1)
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = model(x).logits[0].float()
    logp = torch.log_softmax(logits[:-1], dim=-1)
    targets = x[0, 1:]
    picked = logp[torch.arange(len(targets)), targets]
    return float(picked[-n_cont:].sum())


def score_task(model, tokenizer, task: TaskSpec, max_len: int) -> dict[str, float]:
    examples = read_task(task)
    correct = 0
    for ex in examples:
        scores = [choice_logprob(model, tokenizer, ex.context, c, max_len) for c in ex.choices]
        correct += int(int(np.argmax(scores)) == ex.label)
    majority = max(np.bincount([e.label for e in examples], minlength=2)) / len(examples)
    return {"accuracy": correct / len(examples), "majority_baseline": float(majority), "n": len(examples)}
