"""Start a run: create its `train_runs` row, then hand it to a warm worker, a new process or Ray.

The top of the run modules: it imports the worker, whose Ray entry (`run_in_ray_worker`) it
submits by reference, and the `start_*` functions that validate a run's params live here, so
the modules a worker executes (batch, retrain, registry, seed) never import the launcher and
the import graph stays one-way. A run's params are validated once, here, when its row is
created; the worker reads back what was checked.

The acting account is checked inside the transaction that creates the row (`ActingAs`): an
action passes its checker, so a revoked sign-in or a lost role writes nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from core.base import settings
from core.base.errors import UserError
from core.orchestration import ray_cluster
from core.orchestration.acting_as import ActingAs, acting_as
from core.orchestration.batch import BatchParams, check_model
from core.orchestration.label_run import LabelParams
from core.orchestration.registry import activate_in
from core.orchestration.retrain import RetrainParams
from core.orchestration.run_params import RescoreParams, SeedParams
from core.orchestration.warm_workers import IDLE_FRESH_SECONDS, idle_workers, log_dir
from core.orchestration.worker import run_in_ray_worker
from db.credentials import without_password
from db.models import RunKind, RunStatus, User
from db.train_runs import create_run, finish, get_run

#: The worker process's own entry point (`python -m core.orchestration.worker --run N`).
WORKER_MODULE = "core.orchestration.worker"
#: What a Ray task runs: the worker's entry, by reference.
RAY_ENTRY = run_in_ray_worker

_SUBMITTED: dict[int, Any] = {}  # run id -> the ObjectRef of its Ray task (kept so tests and callers can wait)
_CHILDREN: dict[int, subprocess.Popen] = {}  # reaped by core.base.processes.process_alive / poll


def launch(
    database,
    kind: RunKind,
    params: dict[str, Any],
    actor: int | None | ActingAs,
    *,
    in_transaction=None,
) -> int:
    """Create the run row (refused if one of its kind is running) and start its worker.

    `actor` is checked inside the creating transaction; `in_transaction(session, user)` runs in
    it too (promoting the version a re-score fills), so both are written or neither."""
    use_ray = ray_cluster.enabled()  # a cluster that may not be used (no authentication) is refused before any write
    with database.sessions() as session, session.begin():
        user = acting_as(actor, session)
        run_id = create_run(session, kind, params, user).id
        if in_transaction is not None:
            in_transaction(session, user)
    if use_ray:
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
    env = {**os.environ, "DATABASE_URL": database.full_url}  # the child's environment, never a command line
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


def task_arguments(database, run_id: int) -> tuple[str, int]:
    """What a run's Ray task is handed: the database URL **without its password** and the run id.
    Task arguments are visible to anyone who can list the cluster's tasks; the worker takes the
    password from its own environment (`db.credentials.with_local_password`)."""
    return without_password(database.full_url), run_id


def _submit_to_ray(database, run_id: int, kind: str) -> None:
    """Hand the run to the Ray cluster; if that fails the row says why, and nothing waits on it."""
    try:
        import ray

        ray_cluster.connect()
        options = {
            **ray_cluster.task_resources(kind, ray_cluster.cluster_shape()),
            "max_retries": 0,
            "name": f"probelens-{kind}-{run_id}",
        }
        _SUBMITTED[run_id] = ray.remote(RAY_ENTRY).options(**options).remote(*task_arguments(database, run_id))
    except Exception as exc:
        message = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        with database.sessions() as session, session.begin():
            finish(session, run_id, RunStatus.FAILED, error=f"could not submit to Ray: {message}")
        raise UserError(f"could not submit the run to the Ray cluster: {message}") from None


def wait_on_ray(run_id: int, timeout: float | None = None) -> Any:
    """A Ray task's return value (its final status); raises if the task itself died."""
    import ray

    return ray.get(_SUBMITTED[run_id], timeout=timeout)


# --- starting each kind of run: validate once, then launch -------------------------------------


def start_batch(database, params: BatchParams, actor: int | None | ActingAs) -> int:
    """Validate, then start the worker (refused while another batch runs); returns the run id."""
    params.validate()
    check_model(params.model)
    return launch(database, RunKind.GENERATE, params.to_dict(), actor)


def start_retrain(database, params: RetrainParams, actor: int | None | ActingAs) -> int:
    """Validate (bad options: one message, no row), then start the worker; returns the run id."""
    params.validate()
    return launch(database, RunKind.RETRAIN, params.to_dict(), actor)


def start_seed(database, actor: int | None | ActingAs = None, size: int | None = None, model: str | None = None) -> int:
    """Start the demo seed as a worker run (refused while one runs); returns the run id."""
    return launch(database, RunKind.SEED, SeedParams(int(size or settings.demo_size()), model).to_dict(), actor)


def promote_and_rescore(database, probe_version: int, actor: int | None | ActingAs, model: str | None = None) -> int:
    """Promote `probe_version` and start the re-score that fills the heatmaps; returns that run.

    The re-score's row and the promotion are written in one transaction, with the actor checked
    in it: if the run is refused (a re-score is already running) or the actor may no longer act,
    nothing changed, and the person gets that one message. The version's files are checked in that
    transaction too, after the actor."""

    def promote(session, user: User | None) -> None:
        activate_in(session, probe_version, user)

    return launch(
        database, RunKind.RESCORE, RescoreParams(probe_version, model).to_dict(), actor, in_transaction=promote
    )


def start_label(database, params: LabelParams, actor: int | None | ActingAs) -> int:
    """Check the judge, dataset, instructions version and API key (one message, no row), then
    start the label run (refused while another runs); returns the run id."""
    return launch(database, RunKind.LABEL, params.checked(database).to_dict(), actor)
