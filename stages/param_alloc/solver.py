"""Parameter-count solver: pick d_model, layers and d_ff so the total lands within tolerance.

Why a solver: comparing allocations is only fair at equal parameter count. With a Llama-style
block (no biases, ``num_key_value_heads = n_heads``) the count is closed-form:

    embeddings   V * d                       (tied with the output head)
    per layer    4 d^2 (q, k, v, o) + 3 d f (gate, up, down) + 2 d (two RMSNorm gains)
    final norm   d        (+ V * d more when the head is untied)

``d`` follows from the embedding share, ``f`` from the GLU expansion; both are integers and the
layer count is too, so exact hits are impossible and the solver searches (d, L) near the ideal,
lets ``f`` move by at most ``d_ff_slack`` around ``glu * d`` to absorb the rounding, and keeps
the candidate whose embedding share is closest to the target among those within tolerance.
The built model's ``sum(p.numel())`` is checked against this formula at train time.
"""

from __future__ import annotations

from stages.param_alloc.configs import Allocation, ModelSpec, Shape


class SolverError(ValueError):
    pass


def count_params(vocab_size: int, d_model: int, n_layers: int, d_ff: int, tie_embeddings: bool = True) -> int:
    d = d_model
    per_layer = 4 * d * d + 3 * d * d_ff + 2 * d
    head = 0 if tie_embeddings else vocab_size * d
    return vocab_size * d + n_layers * per_layer + d + head


def solve(alloc: Allocation, spec: ModelSpec, vocab_size: int) -> Shape:
    target, tol, h = spec.target_params, spec.tolerance, spec.n_heads
    step = 2 * h  # head_dim = d / h must be an even integer for RoPE
    ideal_d = alloc.embed_share * target / vocab_size
    best: tuple[float, Shape] | None = None
    d_lo = max(step, int(ideal_d * 0.6) // step * step)
    for d in range(d_lo, int(ideal_d * 1.4) + step + 1, step):
        fixed = vocab_size * d * (1 if spec.tie_embeddings else 2) + d
        per_layer_base = 4 * d * d + 2 * d
        f_nominal = alloc.glu * d
        for n_layers in range(1, 257):
            # solve 3 d L f = target - fixed - L * per_layer_base for f, then round
            f_exact = (target - fixed - n_layers * per_layer_base) / (3 * d * n_layers)
            if f_exact < f_nominal * (1 - spec.d_ff_slack):
                break  # more layers only shrink f further
            if f_exact > f_nominal * (1 + spec.d_ff_slack):
                continue
            d_ff = max(1, round(f_exact))
            total = count_params(vocab_size, d, n_layers, d_ff, spec.tie_embeddings)
            if abs(total - target) / target > tol:
                continue
            share = vocab_size * d / total
            if spec.share_tolerance is not None and abs(share - alloc.embed_share) > spec.share_tolerance:
                continue
            # both axes of the study matter equally: relative error in share and in GLU ratio
            score = abs(share - alloc.embed_share) / alloc.embed_share + abs(d_ff / d - alloc.glu) / alloc.glu
            shape = Shape(vocab_size=vocab_size, d_model=d, n_layers=n_layers, n_heads=h, d_ff=d_ff,
                          max_seq_len=spec.max_seq_len, tie_embeddings=spec.tie_embeddings)
            if best is None or score < best[0]:
                best = (score, shape)
    if best is None:
        raise SolverError(
            f"no shape within ±{tol:.1%} of {target} params for embed_share={alloc.embed_share}, "
            f"glu={alloc.glu}, vocab={vocab_size}, n_heads={h}"
            + (f", embedding share within ±{spec.share_tolerance}" if spec.share_tolerance is not None else "")
            + ": raise model.d_ff_slack (or model.share_tolerance), or change the target")
    return best[1]


class ShapeCollision(SolverError):
    """Two grid points solved to one shape: their comparison would measure nothing."""


def solve_grid(points: list[Allocation], spec: ModelSpec, vocab_size: int) -> list[tuple[Allocation, Shape]]:
    """Solve every grid point; two points with the same (d_model, layers, d_ff) are an error.

    Why an error and not a note: the grid's whole purpose is to compare allocations, and two
    points that build the same model are the same measurement under two names.
    """
    solved = [(p, solve(p, spec, vocab_size)) for p in points]
    check_distinct([(p.tag, s) for p, s in solved], spec, vocab_size)
    return solved


def check_distinct(tagged: list[tuple[str, Shape]], spec: ModelSpec | None = None, vocab_size: int | None = None) -> None:
    """Raise :class:`ShapeCollision` naming every pair of tags that share a shape."""
    seen: dict[tuple[int, int, int], str] = {}
    clashes = []
    for tag, shape in tagged:
        key = (shape.d_model, shape.n_layers, shape.d_ff)
        if key in seen:
            clashes.append(f"{seen[key]} and {tag} both solve to d_model={key[0]}, n_layers={key[1]}, d_ff={key[2]}")
        else:
            seen[key] = tag
    if clashes:
        where = f" (target {spec.target_params} params, vocab {vocab_size}, n_heads {spec.n_heads})" if spec else ""
        raise ShapeCollision("grid points collide" + where + ": " + "; ".join(clashes)
                             + ". Change the grid, model.target_params or the vocabulary so every point has its own shape")


def describe(shape: Shape) -> dict[str, float]:
    total = count_params(shape.vocab_size, shape.d_model, shape.n_layers, shape.d_ff, shape.tie_embeddings)
    return {
        **shape.model_dump(),
        "solved_params": total,
        "embed_params": shape.vocab_size * shape.d_model,
        "embed_share_actual": shape.vocab_size * shape.d_model / total,
        "glu_actual": shape.d_ff / shape.d_model,
    }
