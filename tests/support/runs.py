"""Waiting on run rows (retrain, re-score, batch, seed): the worker is a real process."""

from __future__ import annotations

import time
from collections.abc import Callable

from db.models import TrainRun
from db.train_runs import get_run


def wait_for_run(database, run_id: int, predicate: Callable[[TrainRun], bool], timeout: float = 120.0) -> TrainRun:
    """Poll the run's row until `predicate(row)`; the last state is in the failure message."""
    deadline = time.monotonic() + timeout
    run = None
    while time.monotonic() < deadline:
        with database.sessions() as session:
            run = get_run(session, run_id)
            if predicate(run):
                return run
        time.sleep(0.1)
    last = f"{run.status} {run.stage} {run.message} {run.error}" if run is not None else "no row"
    raise AssertionError(f"run {run_id} never reached the state (last: {last})")


def finished(run: TrainRun) -> bool:
    return run.status not in ("queued", "running")
