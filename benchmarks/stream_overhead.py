"""Tokens/s of plain `model.generate` vs ProbeLens streaming with per-token probe scoring.

Same model, same prompts, same process, greedy decoding, runs interleaved so drift hits
both sides alike. Run: .venv/bin/python benchmarks/stream_overhead.py [--tokens N] [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from core.engine.model import load_model
from core.engine.stream import TokenStream, prompt_ids
from core.probes.linear import LinearProbe

PROMPTS = [
    "Tell me about the history of the city of Lviv.",
    "Write a short biography of the physicist Lise Meitner.",
    "What is the capital of Australia, and what is it known for?",
    "Describe the rules of the game of Go.",
    "Who wrote the novel Middlemarch, and what is it about?",
]


def plain_rate(lm, messages, n: int) -> float:
    ids = torch.tensor([prompt_ids(lm, messages)])
    started = time.perf_counter()
    with torch.inference_mode():
        out = lm.model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False
        )
    return (out.shape[1] - ids.shape[1]) / (time.perf_counter() - started)


def streaming_rate(lm, messages, n: int, probe: LinearProbe) -> float:
    started = time.perf_counter()
    stream = TokenStream(lm, messages, max_new_tokens=n, probe=probe)
    count = sum(1 for token in stream if token.score is not None)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    lm = load_model(None)
    torch.manual_seed(0)
    probe = LinearProbe(lm.hidden_size)
    messages = [[{"role": "user", "content": p}] for p in PROMPTS]
    plain_rate(lm, messages[0], 8)  # warm-up both paths
    streaming_rate(lm, messages[0], 8, probe)
    plain, ours = [], []
    for r in range(args.rounds):
        for m in messages:
            if r % 2 == 0:
                plain.append(plain_rate(lm, m, args.tokens))
                ours.append(streaming_rate(lm, m, args.tokens, probe))
            else:
                ours.append(streaming_rate(lm, m, args.tokens, probe))
                plain.append(plain_rate(lm, m, args.tokens))
    p, s = statistics.median(plain), statistics.median(ours)
    print(f"model={lm.model_id} threads={torch.get_num_threads()} max_new_tokens={args.tokens} runs={len(plain)}")
    print(f"plain_generate_tokens_per_s={p:.2f}")
    print(f"streaming_with_probe_tokens_per_s={s:.2f}")
    print(f"ratio={s / p:.3f}")


if __name__ == "__main__":
    main()
