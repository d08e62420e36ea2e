"""Token progress of a Ray batch-generation run, from the replicas as they generate.

Results come back to the driver a shard at a time, and in a batch every answer of a shard ends
late, so progress counted from results would stand still for minutes and then jump (and the
ETA would wait for the first shard). Instead each replica counts tokens as its engine makes
them and, every `FLUSH_SECONDS`, adds what is new to one `TokenTally` actor; the driver polls
the tally and reports the same fraction a local run reports (`core.engine.bulk`): the token
budget spent, where an ended answer counts its whole budget. So the bar moves from the first
tokens, and the run stays in stage *load* (no ETA) until the replicas have produced any.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

FLUSH_SECONDS = 0.25  # replica -> tally
POLL_SECONDS = 0.5  # driver <- tally


class TokenTally:
    """The run's one counter (a Ray actor): tokens generated, and answers ended with their tokens."""

    def __init__(self) -> None:
        self.tokens = self.ended_tokens = self.ended = 0

    def add(self, tokens: int, ended_tokens: int, ended: int) -> None:
        self.tokens += tokens
        self.ended_tokens += ended_tokens
        self.ended += ended

    def read(self) -> tuple[int, int, int]:
        return self.tokens, self.ended_tokens, self.ended


class ReplicaCounter:
    """A replica's side: counts under a lock (the engine's thread calls it), flushes deltas."""

    def __init__(self, tally: Any | None) -> None:
        self.tally = tally
        self.lock = threading.Lock()
        self.pending = [0, 0, 0]  # tokens, ended tokens, ended answers not yet sent
        self.stop = threading.Event()
        if tally is not None:
            threading.Thread(target=self._flush_loop, name="token-tally", daemon=True).start()

    def token(self, _token: Any = None) -> None:
        with self.lock:
            self.pending[0] += 1

    def ended(self, tokens: int) -> None:
        with self.lock:
            self.pending[1] += tokens
            self.pending[2] += 1

    def flush(self) -> None:
        with self.lock:
            delta, self.pending = self.pending, [0, 0, 0]
        if self.tally is not None and any(delta):
            try:
                self.tally.add.remote(*delta)
            except Exception:  # progress only: a lost update must never fail the shard
                return

    def _flush_loop(self) -> None:
        while not self.stop.wait(FLUSH_SECONDS):
            self.flush()


def spent(tally: tuple[int, int, int], budget: int) -> int:
    """Token budget spent: every ended answer counts its whole budget, others their tokens so far."""
    tokens, ended_tokens, ended = tally
    return ended * budget + max(0, tokens - ended_tokens)


class DriverProgress:
    """The driver's side: polls the tally on a thread and reports stage *generate* with the
    token budget spent (never backwards); `report_now` also runs after each stored shard."""

    def __init__(self, tally: Any, budget: int, answers: int, report: Callable[[int, int, int], None]) -> None:
        self.tally, self.budget, self._report = tally, budget, report
        self.total = budget * answers
        self.lock = threading.Lock()
        self.done = self.tokens = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="token-progress", daemon=True)

    def start(self) -> DriverProgress:
        self.thread.start()
        return self

    def poll(self) -> None:
        import ray

        try:
            read = ray.get(self.tally.read.remote(), timeout=10)
        except Exception:  # progress only: the results still arrive
            return
        self.at_least(spent(read, self.budget), int(read[0]))

    def at_least(self, done: int, tokens: int = 0) -> None:
        """Never backwards: a stored shard proves at least its answers' budget spent."""
        with self.lock:
            self.done = max(self.done, min(self.total, done))
            self.tokens = max(self.tokens, tokens)

    def report_now(self) -> None:
        with self.lock:
            done, tokens = self.done, self.tokens
        if tokens > 0:  # until the replicas produce, the run stays in "load": no ETA from loading
            self._report(done, self.total, tokens)

    def _loop(self) -> None:
        while not self.stop.wait(POLL_SECONDS):
            self.poll()
            self.report_now()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=POLL_SECONDS * 4)
