"""Start a run: create its `train_runs` row, then hand it to a warm worker or a new process.

Kept apart from the worker (`runs.py`) so that modules which start runs (batch, registry)
need not import the modules a worker executes: the import graph stays one-way.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from core.base.errors import UserError
from core.base.processes import process_alive
from core.engine.model import cache_root
from core.orchestration import ray_cluster
from db.models import RunKind, RunStatus
from db.train_runs import create_run, finish, get_run
from db.users import user_by_id

IDLE_POLL_SECONDS = 0.2
#: The worker process's own entry point (`python -m core.orchestration.worker --run N`).
WORKER_MODULE = "core.orchestration.worker"
IDLE_FRESH_SECONDS = 3.0


def log_dir() -> Path:

    return cache_root() / "runs"


def idle_dir(database) -> Path:
    """Warm workers of one database leave a fresh marker file here while they wait."""
    url = database.full_url
    return log_dir() / "idle" / hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def idle_workers(database) -> list[int]:
    """Pids of warm workers of this database that are waiting right now."""

    folder = idle_dir(database)
    if not folder.is_dir():
        return []
    alive = []
    for marker in folder.iterdir():
        try:
            fresh = time.time() - marker.stat().st_mtime < IDLE_FRESH_SECONDS
            pid = int(marker.name)
        except (OSError, ValueError):
            continue
        if fresh and process_alive(pid):
            alive.append(pid)
        elif not fresh:
            marker.unlink(missing_ok=True)
    return alive


def launch(database, kind: RunKind, params: dict[str, Any], actor_id: int | None) -> int:
    """Create the run row (refused if one is running) and start its worker process."""

    with database.sessions() as session, session.begin():
        actor = user_by_id(session, actor_id)
        run_id = create_run(session, kind, params, actor).id
    if ray_cluster.enabled():
        _submit_to_ray(database, run_id, str(kind))
        return run_id
    if idle_workers(database):
        # a warm worker polls for unassigned runs; give it a moment before starting a new one
        deadline = time.monotonic() + 2 * IDLE_FRESH_SECONDS
        while time.monotonic() < deadline:
            with database.sessions() as session:
                if get_run(session, run_id).status != RunStatus.QUEUED:
                    return run_id
            time.sleep(0.05)
    logs = log_dir()
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DATABASE_URL": database.full_url}
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    with open(logs / f"run-{run_id}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, "--run", str(run_id)],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _CHILDREN[run_id] = proc
    with database.sessions() as session, session.begin():
        run = get_run(session, run_id)
        if run.pid is None:
            run.pid = proc.pid
    return run_id


def _submit_to_ray(database, run_id: int, kind: str) -> None:
    """Hand the run to the Ray cluster; if that fails the row says why, and nothing waits on it."""
    try:
        ray_cluster.submit(database.full_url, run_id, kind)
    except Exception as exc:
        message = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        with database.sessions() as session, session.begin():
            finish(session, run_id, RunStatus.FAILED, error=f"could not submit to Ray: {message}")
        raise UserError(f"could not submit the run to the Ray cluster: {message}") from None


_CHILDREN: dict[int, subprocess.Popen] = {}  # reaped by core.base.processes.process_alive / poll
