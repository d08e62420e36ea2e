"""Concurrent Generate sessions: aggregate tokens/s and each stream's time between tokens.

Each simulated session is a `LiveGeneration`, exactly what the Generate page starts, on
the process's shared engine; all start together, greedy, --tokens new tokens, with a probe.
For comparison, the same sessions also run the pre-engine way: one `TokenStream` loop per
session on its own thread, sharing the model but not the forward passes.
Goal at 4 streams: aggregate >= 2.5x one stream's tokens/s, no stream's median time between
tokens over 3x its solo figure.

Run: .venv/bin/python benchmarks/concurrent_streams.py [--tokens 64] [--streams 1,2,4,8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

SUBJECTS = [
    "Lviv",
    "Lise Meitner",
    "the river Danube",
    "the game of Go",
    "Middlemarch",
    "the Andes",
    "Ada Lovelace",
    "the city of Porto",
]


def _messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Write a long essay about {SUBJECTS[i % len(SUBJECTS)]}."}]


def shared(lm, probe, n: int, tokens: int) -> tuple[int, float, list[float]]:
    from core.base.decoding import DecodingSettings
    from core.engine.batched import HeadOnLayer
    from core.engine.live import LiveGeneration

    began = time.perf_counter()
    scorer = HeadOnLayer(probe, lm.default_layer)  # the bare head on the default layer, as TokenStream reads it
    lives = [
        LiveGeneration(lm, _messages(i), DecodingSettings(max_new_tokens=tokens), probe=scorer).start()
        for i in range(n)
    ]
    for live in lives:
        live.join()
    wall = time.perf_counter() - began
    gaps = [statistics.median(b - a for a, b in zip(t, t[1:])) for t in (live.snapshot().produced_at for live in lives)]
    return sum(len(live.snapshot().trace.token_ids) for live in lives), wall, gaps


def separate(lm, probe, n: int, tokens: int) -> tuple[int, float, list[float]]:
    from core.engine.stream import TokenStream

    stamps: list[list[float]] = [[] for _ in range(n)]

    def run(i: int) -> None:
        for _token in TokenStream(lm, _messages(i), max_new_tokens=tokens, probe=probe):
            stamps[i].append(time.perf_counter())

    began = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    gaps = [statistics.median(b - a for a, b in zip(s, s[1:])) for s in stamps]
    return sum(len(s) for s in stamps), wall, gaps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--streams", default="1,2,4,8")
    args = parser.parse_args()
    os.environ.setdefault("PROBELENS_MODEL_CACHE_DIR", str(ROOT / "data" / "cache" / "models"))
    from core.engine.model import get_model
    from core.probes.linear import LinearProbe

    lm = get_model(None)
    torch.manual_seed(0)
    probe = LinearProbe(lm.hidden_size)
    shared(lm, probe, 1, 4)  # warm-up
    print(f"cpus={os.cpu_count()} tokens={args.tokens} (greedy, probe scoring on)")
    solo: dict[str, tuple[float, float]] = {}
    for n in [int(x) for x in args.streams.split(",")]:
        for name, fn in (("shared_engine", shared), ("separate_loops", separate)):
            made, wall, gaps = fn(lm, probe, n, args.tokens)
            tps = made / wall
            if n == 1:
                solo[name] = (tps, gaps[0])
            base_tps, base_gap = solo[name]
            print(
                f"{name} streams={n}: {tps:.1f} tokens/s aggregate ({tps / base_tps:.2f}x one stream), "
                f"median time between tokens per stream {min(gaps) * 1000:.0f}-{max(gaps) * 1000:.0f} ms "
                f"(worst {max(gaps) / base_gap:.2f}x solo)"
            )


if __name__ == "__main__":
    main()
