"""Concurrent streaming clients of `python -m core serve` against the in-process shared engine.

At each level (1, 4, 16 clients by default) the same prompts are answered twice: by a real
`serve` process on a free port, streamed to that many concurrent `AsyncOpenAI` clients, and by
the shared engine of this process driven directly as the Generate page drives it
(`LiveGeneration`, one per client, all started together). Both sides use the same model, the
same probe version (a seeded random linear probe registered in a throw-away SQLite database)
and greedy decoding, so they produce the same tokens. Printed per level: aggregate tokens/s of
each side and `ratio=<served / in-process>` (goal >= 0.9 at 4 and 16: the HTTP layer must cost
little), time to first token p50/p95 and time between tokens p95 (a chunk's gap shared among
its tokens), and CPU-seconds per 1,000 tokens of each party: the `serve` process (and its event
loop thread alone: the HTTP layer), the clients, and this process driving its engine. Both sides
are warmed up at the highest level first.

Fairness: the server runs in its own process, as a user runs it, so the clients (in this
process) share no GIL with it; they do share the machine's cores, which the in-process side,
having no client, does not pay for. The client's CPU per 1,000 tokens is printed so that share
can be read off (on 2 cores the `openai` client's parsing of the chunks costs more CPU than the
server's HTTP layer).

Run: .venv/bin/python benchmarks/serve_load.py [--max-tokens 64] [--levels 1,4,16] [--rounds 2]
     [--model M] (default: the embedded model)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

# The same prompts as the in-process streaming benchmark.
from benchmarks.concurrent_streams import _messages  # noqa: E402


@dataclass
class Side:
    """One side's figures at one level, summed over rounds."""

    tokens: int = 0
    wall: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU-seconds by party (server, client, engine)
    first: list[float] = field(default_factory=list)  # time to first token, per answer
    gaps: list[float] = field(default_factory=list)  # time between tokens, per token after the first

    def add(self, tokens: int, wall: float, stamps: list[tuple[float, list[float]]]) -> None:
        """`stamps`: per answer, (its start, the arrival time of each of its tokens)."""
        self.tokens += tokens
        self.wall += wall
        for start, times in stamps:
            if not times:
                continue
            self.first.append(times[0] - start)
            self.gaps.extend(_token_gaps(times))

    @property
    def rate(self) -> float:
        return self.tokens / self.wall if self.wall else 0.0

    def per_1k(self, party: str) -> str:
        """CPU-seconds of `party` per 1,000 tokens."""
        return f"{1000 * self.cpu.get(party, 0.0) / self.tokens:.2f}" if self.tokens else "-"


class CpuClock:
    """CPU-seconds (user + system) used by this process (all threads), by the server (all
    threads) and by the server's event loop (its main thread: the HTTP layer, without the engine
    thread, the torch threads or the thread pool)."""

    PARTIES = ("here", "server", "event loop")

    def __init__(self, server_pid: int) -> None:
        import psutil  # installed with accelerate and peft

        self.server = psutil.Process(server_pid)

    def read(self) -> tuple[float, float, float]:
        here, there = os.times(), self.server.cpu_times()
        loop = next((t.user_time + t.system_time for t in self.server.threads() if t.id == self.server.pid), 0.0)
        return here.user + here.system, there.user + there.system, loop

    def measure(self, side: Side, here: str, run, *args):
        """`run(*args)`, adding the CPU time of each party to `side` (this process's as `here`)."""
        before = self.read()
        out = run(*args)
        after = self.read()
        for party, a, b in zip((here, *self.PARTIES[1:]), before, after):
            side.cpu[party] = side.cpu.get(party, 0.0) + b - a
        return out


def _token_gaps(times: list[float]) -> list[float]:
    """Gaps between tokens; tokens that arrived together share the gap before them."""
    gaps: list[float] = []
    previous = times[0]
    i = 1
    while i < len(times):
        j = i
        while j < len(times) and times[j] == times[i]:
            j += 1
        gaps.extend([(times[i] - previous) / (j - i)] * (j - i))
        previous = times[i]
        i = j
    return gaps


def in_process(lm, probe, n: int, max_tokens: int) -> tuple[int, float, list[tuple[float, list[float]]]]:
    """n answers on this process's shared engine, started together, as the Generate page starts them."""
    from core.base.decoding import DecodingSettings
    from core.engine.live import LiveGeneration

    began = time.time()
    lives = [
        LiveGeneration(lm, _messages(i), DecodingSettings(max_new_tokens=max_tokens, temperature=0.0), probe=probe)
        for i in range(n)
    ]
    starts = []
    for live in lives:
        starts.append(time.time())
        live.start()
    for live in lives:
        live.join()
    wall = time.time() - began
    snapshots = [live.snapshot() for live in lives]
    made = sum(len(s.trace.token_ids) for s in snapshots)
    return made, wall, [(start, list(s.produced_at)) for start, s in zip(starts, snapshots)]


async def _one_client(client, model: str, i: int, max_tokens: int) -> tuple[float, list[float], int]:
    start = time.time()
    times: list[float] = []
    stream = await client.chat.completions.create(
        model=model, messages=_messages(i), max_tokens=max_tokens, temperature=0, stream=True
    )
    async for chunk in stream:
        risks = (chunk.model_extra or {}).get("probelens", {}).get("risks")
        if risks:
            now = time.time()
            times.extend([now] * len(risks))
    return start, times, len(times)


async def _served_level(url: str, key: str, model: str, n: int, max_tokens: int):
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=600)
    try:
        began = time.time()
        results = await asyncio.gather(*(_one_client(client, model, i, max_tokens) for i in range(n)))
        wall = time.time() - began
    finally:
        await client.close()
    return sum(r[2] for r in results), wall, [(r[0], r[1]) for r in results]


def served(url: str, key: str, model: str, n: int, max_tokens: int):
    return asyncio.run(_served_level(url, key, model, n, max_tokens))


def _prepare(folder: Path, lm) -> str:
    """A throw-away database with a seeded random probe (active) and one API key; returns the key."""
    import torch

    from core.orchestration.registry import register_version
    from core.probes.config import ProbeConfig
    from core.probes.files import save_probe
    from core.probes.linear import LinearProbe
    from db import open_database
    from db.api_keys import create_key
    from db.users import add_user

    database = open_database(os.environ["DATABASE_URL"])
    torch.manual_seed(0)
    probe = LinearProbe(lm.hidden_size)

    def write(staging, version):
        config = ProbeConfig(
            model_id=lm.model_id,
            tokenizer_hash=lm.tokenizer_hash,
            layer=lm.default_layer,
            hidden_size=lm.hidden_size,
            version=version,
        )
        save_probe(staging, probe, config)
        return config

    register_version(database, write, activate=True)
    with database.sessions() as session, session.begin():
        user = add_user(session, "bench", "bench-password", "annotator")
        key = create_key(session, user, "bench", actor=None)[1]
    database.dispose()
    return key


def _start_server(model: str, port: int, max_tokens: int, levels: list[int], log: Path) -> subprocess.Popen:
    """`python -m core serve` on `port`, its log lines in `log` (said if it fails to start)."""
    env = {
        **os.environ,
        "PROBELENS_SERVE_MAX_TOKENS": str(max_tokens),
        "PROBELENS_SERVE_MAX_IN_FLIGHT": str(max(levels)),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "serve", "--port", str(port), "--model", model],
        cwd=ROOT,
        env=env,
        stderr=log.open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 600
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited before it answered /health: see {log}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if time.time() > deadline:
            proc.terminate()
            raise SystemExit(f"serve did not start in 10 minutes: see {log}")
        time.sleep(0.3)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ms(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q) * 1000:.0f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=64, help="new tokens per answer (greedy)")
    parser.add_argument("--levels", default="1,4,16", help="concurrent clients, comma-separated")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per level, the two sides alternating")
    parser.add_argument("--model", default=None, help="HF id or local path (default: the embedded model)")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    folder = Path(tempfile.mkdtemp(prefix="serve-load-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{folder / 'bench.db'}"
    os.environ["PROBELENS_PROBES_DIR"] = str(folder / "probes")
    from core.engine.model import get_model
    from core.orchestration.registry import load_version
    from db import open_database

    lm = get_model(args.model)
    model = args.model or lm.model_id
    key = _prepare(folder, lm)
    database = open_database(os.environ["DATABASE_URL"])
    probe = load_version(database, lm, 1)
    port = _free_port()
    proc = _start_server(model, port, args.max_tokens, levels, folder / "serve.log")
    url = f"http://127.0.0.1:{port}"
    clock = CpuClock(proc.pid)
    try:
        in_process(lm, probe, max(levels), 4)  # warm-up at the highest level, both sides
        served(url, key, lm.model_id, max(levels), 4)
        print(
            f"cpus={os.cpu_count()} model={lm.model_id} max_tokens={args.max_tokens} rounds={args.rounds} "
            "(greedy, probe scoring on, streaming)"
        )
        for n in levels:
            ours, theirs = Side(), Side()
            for r in range(args.rounds):
                order = (("in", ours), ("served", theirs)) if r % 2 == 0 else (("served", theirs), ("in", ours))
                for name, side in order:
                    if name == "in":
                        made = clock.measure(side, "engine", in_process, lm, probe, n, args.max_tokens)
                    else:
                        made = clock.measure(side, "client", served, url, key, lm.model_id, n, args.max_tokens)
                    side.add(*made)
            ratio = theirs.rate / ours.rate if ours.rate else float("nan")
            print(
                f"clients={n}: served {theirs.rate:.1f} tokens/s, in-process {ours.rate:.1f} tokens/s, "
                f"ratio={ratio:.3f}; time to first token p50/p95 served {_ms(theirs.first, 50)}/"
                f"{_ms(theirs.first, 95)} ms, in-process {_ms(ours.first, 50)}/{_ms(ours.first, 95)} ms; "
                f"time between tokens p95 served {_ms(theirs.gaps, 95)} ms, in-process {_ms(ours.gaps, 95)} ms; "
                f"CPU-seconds per 1k tokens: serve process {theirs.per_1k('server')} (its event loop "
                f"{theirs.per_1k('event loop')}), its clients {theirs.per_1k('client')}, in-process "
                f"{ours.per_1k('engine')}",
                flush=True,
            )
    finally:
        proc.terminate()
        proc.wait(30)
        database.dispose()


if __name__ == "__main__":
    main()
