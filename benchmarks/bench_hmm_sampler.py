"""Sampler throughput: the vectorised HMM sampler vs a per-token ``rng.choice`` loop, same run.

Prints tokens/s of both and their ratio for K = H = 100 (the goal: >= 10M tokens/s on
2 cores). Both samplers draw from the same random HMM; the reference loop runs on far fewer
tokens (it is ~10^4 times slower) and its rate is extrapolated as tokens / seconds.

    python benchmarks/bench_hmm_sampler.py [--hidden 100] [--emissions 100] [--seq-len 100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from stages.hmm_icl.hmm import random_params
from stages.hmm_icl.sampler import HmmSampler, reference_sample

GOAL_TOKENS_PER_S = 10e6


def best_rate(fn, tokens: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return tokens / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--emissions", type=int, default=100)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--ref-sequences", type=int, default=20)
    ap.add_argument("--permute", action="store_true")
    args = ap.parse_args()
    params = random_params(args.hidden, args.emissions, np.random.default_rng(0))
    sampler = HmmSampler(params)
    out = np.empty((args.batch, args.seq_len), dtype=np.uint16)  # preallocated, as the shards are
    rng = np.random.default_rng(1)

    def vectorised() -> None:
        for _ in range(args.batches):
            sampler.sample(args.batch, args.seq_len, rng, out=out, permute=args.permute)

    vec = best_rate(vectorised, args.batch * args.batches * args.seq_len, repeats=3)
    ref = best_rate(lambda: reference_sample(params, args.ref_sequences, args.seq_len, rng),
                    args.ref_sequences * args.seq_len, repeats=1)
    print(f"K={args.emissions} H={args.hidden} L={args.seq_len} permute={args.permute}")
    print(f"vectorised sampler : {vec:,.0f} tokens/s  (batch {args.batch})")
    print(f"per-token reference: {ref:,.0f} tokens/s")
    print(f"ratio vectorised / reference: {vec / ref:,.0f}x")
    print(f"goal >= {GOAL_TOKENS_PER_S:,.0f} tokens/s: {'met' if vec >= GOAL_TOKENS_PER_S else 'NOT met'}")


if __name__ == "__main__":
    main()
