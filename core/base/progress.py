"""Progress reporting and cancellation shared by every long-running core function.

Long work takes an optional `progress` callback and an optional `cancel` token, so the
CLI, background jobs and tests can all watch and stop it the same way.
"""

from __future__ import annotations

import threading
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
