"""Progress reporting and cancellation shared by every long-running core function.

Long work takes an optional `progress` callback and an optional `cancel` token, so the
CLI, background jobs and tests can all watch and stop it the same way.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
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

OUTCOME_NEWS_SECONDS = 120


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored moment is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def eta_seconds(
    *, running: bool, measured: object, beat_at: datetime | None, now: datetime | None = None
) -> float | None:
    """Time left as the worker measured it at its last heartbeat (`measured`: the run's
    `timings["eta_s"]`, written only once the current stage's pace is measured, see
    `StagedProgress.eta`), less the time since that heartbeat; None until then."""
    if not running or beat_at is None or isinstance(measured, bool) or not isinstance(measured, int | float):
        return None
    return max(0.0, float(measured) - ((now or datetime.now(UTC)) - _utc(beat_at)).total_seconds())


def outcome_is_news(finished_at: str | None, now: datetime | None = None) -> bool:
    """Whether a run that finished at `finished_at` (ISO text, None while it runs) ended recently
    enough for its outcome box to still be shown; older outcomes clutter a page whose tables
    already tell them."""
    if not finished_at:
        return True
    ended = _utc(datetime.fromisoformat(finished_at))
    return ((now or datetime.now(UTC)) - ended).total_seconds() < OUTCOME_NEWS_SECONDS


#: ETA: no estimate until the current stage has measured this long and this share of its units.
ETA_MIN_SECONDS = 2.0
ETA_MIN_SHARE = 0.02


class StagedProgress:
    """One bar for work made of stages, each taking a share of it (`shares`: stage -> (lo, hi)).

    It is a `ProgressFn`. The bar never goes backwards within a run: a report with a lower
    count than the last one of the same pass is ignored (message included), and the overall
    fraction only grows. A stage name that comes back after another stage, or with another
    total, is a new pass. `eta()` stays None until the current pass has measured
    `ETA_MIN_SECONDS` and `ETA_MIN_SHARE` of its units (at least one), and never during an
    `untimed` stage: extrapolating from loading a model, or from a stage's first tick, only
    made the estimate climb."""

    def __init__(
        self,
        shares: dict[str, tuple[float, float]],
        *,
        untimed: tuple[str, ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shares, self.untimed, self.clock = shares, untimed, clock
        self.stage, self.done, self.total = "start", 0, 0
        self.fraction, self.message = 0.0, ""
        self._pass_start: tuple[float, float, int] = (clock(), 0.0, 0)  # time, fraction, done

    def __call__(self, stage: str, done: int, total: int, message: str = "") -> None:
        same_pass = stage == self.stage and total == self.total
        if same_pass and done < self.done:
            return
        if not same_pass:
            self._pass_start = (self.clock(), self.fraction, done)
        lo, hi = self.shares.get(stage, (self.fraction, self.fraction))
        part = min(1.0, done / total) if total > 0 else 0.0
        self.stage, self.done, self.total = stage, done, total
        self.fraction = max(self.fraction, lo + (hi - lo) * part)
        self.message = f"{stage}: {done}/{total}" + (f" · {message}" if message else "")

    def eta(self) -> float | None:
        """Seconds left at the current pass's pace, or None until that pace has been measured."""
        started, fraction0, done0 = self._pass_start
        elapsed = self.clock() - started
        needed = max(1, math.ceil(self.total * ETA_MIN_SHARE))
        gained = self.fraction - fraction0
        if (
            self.stage not in self.shares
            or self.stage in self.untimed
            or elapsed < ETA_MIN_SECONDS
            or self.done - done0 < needed
            or gained <= 0
        ):
            return None
        return max(0.0, (1.0 - self.fraction) * elapsed / gained)
