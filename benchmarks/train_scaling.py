"""How long probe training takes as the cached-activation set grows.

Synthetic data shaped like the real thing: hidden size 576 (SmolLM2-135M), generations of
~500 completion tokens (300..700), an entity span every ~40 tokens (1..8 tokens, 30 %
hallucinated), a few ignored (N/A) spans, three huge-magnitude outlier dimensions like an
LLM residual stream, and a weak linear signal on hallucinated tokens.

Training config: ONE EPOCH (as in the paper), otherwise the TrainConfig defaults (AdamW
lr 1e-3, batches of 16 generations, token + span-max loss with the w ramp, standardised
inputs). Time counted = train_probe() only; building the TrainingSet is reported apart.

    .venv/bin/python benchmarks/train_scaling.py [--sizes 10000,100000,1000000]
                                                 [--dtype float32|float16] [--threads N]

Training runs with TrainConfig.num_threads (default 1; ``--threads 2`` to compare).

Last line: ``tokens_per_s_1M=<n> seconds_1M=<s>``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.probes.linear import TrainConfig, train_probe
from core.probes.training_set import build_training_set

HIDDEN = 576


def synthetic_examples(n_tokens: int, dtype: torch.dtype, seed: int = 0):
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    lengths = []
    total = 0
    while total < n_tokens:
        t = min(int(rng.integers(300, 701)), n_tokens - total)
        lengths.append(t)
        total += t
    X = torch.randn(total, HIDDEN, generator=gen, dtype=torch.float32)
    X[:, :3] *= 300.0  # outlier dimensions
    direction = torch.randn(HIDDEN, generator=gen)
    direction /= direction.norm()

    examples = []
    pos = 0
    for g, T in enumerate(lengths):
        labels = np.zeros(T, np.int8)
        span_ids = np.full(T, -1, np.int32)
        span_labels = []
        i = int(rng.integers(0, 40))
        while i < T:
            n = int(rng.integers(1, 9))
            if rng.random() < 0.05:  # N/A span: ignored, not scored
                labels[i : i + n] = -1
            else:
                lab = int(rng.random() < 0.3)
                labels[i : i + n] = lab
                span_ids[i : i + n] = len(span_labels)
                span_labels.append(lab)
            i += n + int(rng.integers(10, 70))
        hal = torch.from_numpy(labels == 1)
        X[pos : pos + T][hal] += 0.8 * direction
        examples.append((X[pos : pos + T].to(dtype), labels, span_ids, np.array(span_labels, np.int8), f"g{g}"))
        pos += T
    return examples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    ap.add_argument(
        "--threads",
        type=int,
        default=TrainConfig().num_threads,
        help="TrainConfig.num_threads, torch threads while training (default %(default)s)",
    )
    args = ap.parse_args()
    cfg = TrainConfig(epochs=1, num_threads=args.threads)
    dtype = getattr(torch, args.dtype)
    sizes = [int(s) for s in args.sizes.split(",")]

    print(
        f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"cpus={os.cpu_count()}, training threads={cfg.num_threads}, X dtype={args.dtype}"
    )
    print(
        "# config: epochs=1 (one pass, as in the paper), batch 16 generations, hidden 576, "
        "standardize=True, AdamW lr 1e-3"
    )
    # One-time process cost (torch.optim's lazy imports, ~1 s) kept out of the per-size rows.
    t0 = time.perf_counter()
    train_probe(build_training_set(synthetic_examples(2000, dtype, seed=1)), cfg)
    print(f"# warm-up (first train_probe call in a process, tiny data): {time.perf_counter() - t0:.2f} s")
    print(
        f"{'tokens':>9} {'gens':>5} {'steps':>5} {'build_s':>8} {'train_s':>8} {'tokens/s':>10} "
        f"{'tokloss_first10':>15} {'tokloss_last10':>14}"
    )
    result = {}
    for n in sizes:
        examples = synthetic_examples(n, dtype)
        t0 = time.perf_counter()
        data = build_training_set(examples)
        del examples
        t1 = time.perf_counter()
        _, history = train_probe(data, cfg)
        t2 = time.perf_counter()
        secs = t2 - t1
        rate = data.n_tokens / secs
        result[n] = (rate, secs)
        first = float(np.mean([h["token_loss"] for h in history[:10]]))
        last = float(np.mean([h["token_loss"] for h in history[-10:]]))
        print(
            f"{data.n_tokens:>9} {data.n_generations:>5} {len(history):>5} {t1 - t0:>8.2f} {secs:>8.2f} "
            f"{rate:>10.0f} {first:>15.4f} {last:>14.4f}",
            flush=True,
        )
        del data
    if 1_000_000 in result:
        rate, secs = result[1_000_000]
        print(f"tokens_per_s_1M={rate:.0f} seconds_1M={secs:.2f}")


if __name__ == "__main__":
    main()
