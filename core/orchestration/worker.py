"""The run worker's own entry point: `python -m core.orchestration.worker --run N`.

The app (`launcher.launch`) starts it for a run; it is not a command for people, so it is not
in the user CLI (`python -m core`). After its run a worker stays warm
(`PROBELENS_WORKER_IDLE_SECONDS`) and claims the next unassigned run, so a retrain after a few
corrections does not pay the process start-up again. On Ray, `run_in_ray_worker` is the task.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Sequence

from core.base import settings
from core.base.errors import UserError
from core.orchestration.ray_cluster import worker_defaults
from core.orchestration.runs import execute_run
from core.orchestration.warm_workers import IDLE_POLL_SECONDS, idle_dir
from db import open_database
from db.credentials import with_local_password
from db.models import RunStatus
from db.train_runs import claim, next_unassigned

IDLE = "idle"  # what a warm worker that ran nothing reports (not a run's status)


def run_in_ray_worker(database_url: str, run_id: int) -> str:
    """A Ray task's body: run `run_id` against its row, as a local worker process would.

    `database_url` comes without its password (task arguments are visible on the cluster); the
    password comes from this worker's own environment."""
    worker_defaults()
    database = open_database(with_local_password(database_url), migrate=False)
    try:
        return execute_run(database, run_id, on_ray=True)
    finally:
        database.dispose()


def worker_main(database, run_id: int | None) -> str:
    """A worker process: its own run first, then stay warm (model and imports loaded) for the
    next unassigned run, so a retrain after a few corrections does not pay the start-up again."""

    status = IDLE
    me = os.getpid()
    if run_id is not None:
        with database.sessions() as session, session.begin():
            mine = claim(session, run_id, me)
        if mine:
            status = execute_run(database, run_id, claimed=True)
    folder = idle_dir(database)
    marker = folder / str(me)
    deadline = time.monotonic() + settings.worker_idle_seconds()
    try:
        while time.monotonic() < deadline:
            folder.mkdir(parents=True, exist_ok=True)
            marker.touch()
            with database.sessions() as session, session.begin():
                candidate = next_unassigned(session)
                taken = candidate is not None and claim(session, candidate, me, only_unassigned=True)
            if taken and candidate is not None:
                marker.unlink(missing_ok=True)
                status = execute_run(database, candidate, claimed=True)
                deadline = time.monotonic() + settings.worker_idle_seconds()
                continue
            time.sleep(IDLE_POLL_SECONDS)
    except Exception:  # the database went away (or similar): stop being warm
        traceback.print_exc()
    finally:
        marker.unlink(missing_ok=True)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run `--run N` (then stay warm); exit 0 when it succeeded or nothing was run, 1 otherwise,
    2 with one stderr line for bad input (an unknown database, say)."""
    parser = argparse.ArgumentParser(prog="python -m core.orchestration.worker", description=__doc__)
    parser.add_argument("--run", type=int, required=True, help="the id of the queued run to execute")
    args = parser.parse_args(argv)
    try:
        status = worker_main(open_database(), args.run)
    except UserError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    return 0 if status in (RunStatus.SUCCEEDED, IDLE) else 1


if __name__ == "__main__":
    sys.exit(main())
