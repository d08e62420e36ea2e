"""Progress reporting and cancellation shared by every long-running core function.

Long work takes an optional `progress` callback and an optional `cancel` token, so the
CLI, background jobs and tests can all watch and stop it the same way.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Protocol


class Cancelled(Exception):
    """Raised inside long work when its cancel token is set."""


class ProgressFn(Protocol):
    def __call__(self, stage: str, done: int, total: int, message: str = "") -> None: ...


class CancelToken:
    """A thread-safe flag; `check()` raises Cancelled once it is set."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")


def report(progress: ProgressFn | None, stage: str, done: int, total: int, message: str = "") -> None:
    if progress is not None:
        progress(stage, done, total, message)


def as_stage(progress: ProgressFn | None, stage: str) -> ProgressFn | None:
    """`progress` with every report filed under `stage`: for a step that calls a function
    reporting under another step's name (a LoRA run fits its starting head with the linear
    trainer, which reports "train", before its own "train" steps)."""
    if progress is None:
        return None
    filed_under = stage

    # The parameter keeps the protocol's name `stage` (callers may pass it by keyword); it is ignored.
    def renamed(stage: str, done: int, total: int, message: str = "") -> None:
        progress(filed_under, done, total, message)

    return renamed


def check(cancel: CancelToken | None) -> None:
    if cancel is not None:
        cancel.check()


# --- a run's pace, from what its row says (pure: the row's fields, not the row) ---------

STARTING_STAGES = ("start", "load")
OUTCOME_NEWS_SECONDS = 120


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored moment is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def eta_seconds(
    *, running: bool, stage: str | None, progress: float | None, started: datetime | None, now: datetime | None = None
) -> float | None:
    """Time left if a run keeps its pace since it started (None until there is a pace)."""
    done = progress or 0.0
    if not running or started is None or not 0.0 < done < 1.0:
        return None
    if stage in STARTING_STAGES:
        return None  # loading the model is not the pace of the work: an ETA here would only grow
    elapsed = ((now or datetime.now(UTC)) - _utc(started)).total_seconds()
    return max(0.0, elapsed * (1.0 - done) / done)


def outcome_is_news(finished_at: str | None, now: datetime | None = None) -> bool:
    """Whether a run that finished at `finished_at` (ISO text, None while it runs) ended recently
    enough for its outcome box to still be shown; older outcomes clutter a page whose tables
    already tell them."""
    if not finished_at:
        return True
    ended = _utc(datetime.fromisoformat(finished_at))
    return ((now or datetime.now(UTC)) - ended).total_seconds() < OUTCOME_NEWS_SECONDS
