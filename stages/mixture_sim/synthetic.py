"""A simulator table drawn from a *known* smooth function of the features.

Why: the regressors must be tested against ground truth. Real training outcomes have no closed
form; this table does (a Chinchilla-like power law in size and step, plus a linear and an
interaction term in the mixture), so "the MLP explains most of the variance" is a checkable
claim. Used by the tests and the benchmark; never by the study's DAG.
"""

from __future__ import annotations

import numpy as np

from stages.mixture_sim.configs import TableSchema

#: the seed's 5 proportion columns and 11 targets (RedPajama domains; downstream accuracies)
SEED_DOMAINS = ["RedPajamaWikipedia", "RedPajamaStackExchange", "RedPajamaGithub", "RedPajamaArXiv", "RedPajamaBook"]
SEED_TARGETS = (
    ["train/CrossEntropyLoss"]
    + [f"eval/RedPajama{d}/CrossEntropyLoss"
       for d in ["CommonCrawl", "C4", "Wikipedia", "StackExchange", "Github", "ArXiv", "Book"]]
    + ["eval/downstream/hellaswag_len_norm", "eval/downstream/piqa_len_norm", "eval/downstream/arc_easy_acc"]
)
#: (size in parameters, d_model, n_heads) of the synthetic model grid
SIZES = [(20e6, 256, 4), (60e6, 512, 8), (150e6, 768, 12), (300e6, 1024, 16), (1e9, 2048, 16)]
STEPS = [2000, 5000, 10000, 15000, 20000, 30000]


def seed_schema() -> TableSchema:
    """The seed's table layout (losses: lower is better; downstream accuracies: higher)."""
    return TableSchema(domains=SEED_DOMAINS, targets=[
        {"name": t, "better": "higher" if "downstream" in t else "lower"} for t in SEED_TARGETS])


def truth(schema: TableSchema, props: np.ndarray, size: np.ndarray, step: np.ndarray, seed: int = 0) -> np.ndarray:
    """Noise-free targets, shape (rows, targets); losses fall with size/step, accuracies rise."""
    rng = np.random.default_rng([seed, 7])
    n_dom = props.shape[1]
    out = []
    for target in schema.targets:
        w = rng.uniform(-0.6, 0.6, n_dom)
        a, b = rng.uniform(0.2, 0.4), rng.uniform(0.2, 0.5)
        base = (0.8 * (size / 1e7) ** -a + 0.8 * (step / 1e3) ** -b
                + props @ w + 1.5 * props[:, 0] * props[:, 1 % n_dom])
        if target.better == "lower":
            out.append(2.0 + base)
        else:
            out.append(0.25 + 0.6 / (1.0 + np.exp(2.0 * (base - 0.8))))
    return np.stack(out, axis=1)


def smooth_table(schema: TableSchema, n_mixtures: int = 24, seed: int = 0, noise: float = 0.005,
                 sizes=SIZES, steps=STEPS):
    """One run per (mixture, size), one row per step; targets = truth + small Gaussian noise."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    mixtures = rng.dirichlet(np.ones(len(schema.domains)), size=n_mixtures)
    shape_cols = list(schema.shape)
    rows = []
    for m, mix in enumerate(mixtures):
        for size, d_model, heads in sizes:
            for step in steps:
                row = {schema.run: f"m{m:02d}-{int(size / 1e6)}M", schema.step: int(step), schema.size: float(size)}
                row.update(dict(zip(schema.domains, mix)))
                shape_vals = {"d_model": d_model, "n_heads": heads, "n_layers": 12, "ffn": 4 * d_model}
                row.update({c: int(shape_vals[schema.shape[c]]) for c in shape_cols})
                rows.append(row)
    frame = pd.DataFrame(rows)
    y = truth(schema, frame[schema.domains].to_numpy(), frame[schema.size].to_numpy(),
              frame[schema.step].to_numpy(dtype=float), seed)
    y = y + rng.normal(0.0, noise, y.shape)
    for j, name in enumerate(schema.target_names):
        frame[name] = y[:, j]
    return frame[schema.columns]
