"""The worker: executes one run (retrain, re-score, batch generation, demo seed) against its row.

A run's row is the single source of truth: a heartbeat thread writes stage, progress and
message every second and reads the cancel flag. After its run a worker stays warm
(`PROBELENS_WORKER_IDLE_SECONDS`) and claims the next unassigned run, so a retrain after a
few corrections does not pay the process start-up again.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.base import settings
from core.base.errors import UserError
from core.base.progress import Cancelled, CancelToken, ProgressFn, check
from core.engine.model import lazy_model
from core.orchestration.batch import BatchParams, run_batch
from core.orchestration.launcher import IDLE_POLL_SECONDS, idle_dir
from core.orchestration.ray_cluster import worker_defaults
from core.orchestration.ray_pipelines import ray_generate, ray_rescore
from core.orchestration.rescore import rescore
from core.orchestration.retrain import RetrainParams, retrain
from core.orchestration.seed import seed_demo
from core.text.readable import plural
from db.models import RunKind, RunStatus
from db.train_runs import beat as write_beat
from db.train_runs import claim, finish, get_run, mark_started, next_unassigned

HEARTBEAT_SECONDS = 1.0


class _Beat:
    """Latest progress in memory; a thread writes it with a heartbeat and reads the cancel flag."""

    def __init__(self, database, run_id: int, cancel: CancelToken) -> None:
        self.database, self.run_id, self.cancel = database, run_id, cancel
        self.stage, self.fraction, self.message = "start", 0.0, ""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"heartbeat-{run_id}", daemon=True)

    # Overall progress: stages take these shares of the bar.
    # "head": a LoRA run's starting head (seconds), before its "train" steps.
    SHARES = {
        "load": (0.0, 0.05),
        "labels": (0.05, 0.07),
        "extract": (0.07, 0.45),
        "head": (0.45, 0.5),
        "train": (0.5, 0.9),
        "evaluate": (0.9, 0.92),
        "compare": (0.92, 0.99),
        "bootstrap": (0.92, 0.99),
        "register": (0.99, 1.0),
        "rescore": (0.05, 1.0),
        "generate": (0.05, 1.0),
    }

    def __call__(self, stage: str, done: int, total: int, message: str = "") -> None:
        lo, hi = self.SHARES.get(stage, (self.fraction, self.fraction))
        part = min(1.0, done / total) if total else 0.0
        self.stage, self.fraction = stage, max(self.fraction if stage == self.stage else 0.0, lo + (hi - lo) * part)
        self.message = f"{stage}: {done}/{total}" + (f" · {message}" if message else "")

    def _loop(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS):
            self.write(write_beat)

    def write(self, beat) -> None:
        try:
            with self.database.sessions() as session, session.begin():
                if beat(session, self.run_id, stage=self.stage, progress=self.fraction, message=self.message):
                    self.cancel.cancel()
        except Exception:
            traceback.print_exc()


@dataclass
class RunContext:
    """What every kind of run gets: its row, its model, and the progress/cancel pair."""

    database: Any
    run_id: int
    params: dict[str, Any]
    created_by: int | None
    progress: ProgressFn
    cancel: CancelToken


def _retrain(ctx: RunContext) -> str | None:
    params = RetrainParams.from_dict(ctx.params)
    retrain(
        ctx.database,
        _model(ctx),
        params,
        run_id=ctx.run_id,
        created_by=ctx.created_by,
        progress=ctx.progress,
        cancel=ctx.cancel,
    )
    return None  # the row was finished inside the registering transaction


def _rescore(ctx: RunContext) -> str:
    version = int(ctx.params["version"])
    counts = rescore(ctx.database, _model(ctx), version, progress=ctx.progress, cancel=ctx.cancel)
    return _rescored_message(counts, version)


def _rescored_message(counts: dict[str, int], version: int) -> str:
    return f"scored {plural(counts['scored'], 'answer')} with v{version}" + (
        f"; stored tokens of {counts['tokens_added']}" if counts["tokens_added"] else ""
    )


def _generate(ctx: RunContext) -> str:
    result = run_batch(
        ctx.database,
        _model(ctx),
        BatchParams.from_dict(ctx.params),
        created_by=ctx.created_by,
        progress=ctx.progress,
        cancel=ctx.cancel,
    )
    return _generated_message(result)


def _generated_message(result: dict[str, Any]) -> str:
    skipped = result["skipped"]
    return (
        f"generated {plural(result['answers'], 'answer')} ({result['tokens']} tokens)"
        + (f", scored with v{result['probe_version']}" if result["probe_version"] else "")
        + (
            f"; skipped {len(skipped)} that could not be stored (first: prompt {skipped[0][0]}: {skipped[0][1]})"
            if skipped
            else ""
        )
    )


def _seed(ctx: RunContext) -> str:
    result = seed_demo(ctx.database, _model(ctx), size=ctx.params.get("size"), progress=ctx.progress, cancel=ctx.cancel)
    if result.get("skipped"):
        return "the demo data already exists"
    note = "" if result.get("activated", True) else " (not made active: another probe was promoted meanwhile)"
    return f"demo: {plural(result['answers'], 'answer')}, probe v{result['probe_version']}{note}"


def _model(ctx: RunContext):
    ctx.progress("load", 0, 1, "loading the model")
    lm = lazy_model(ctx.params.get("model"))  # weights only if some hidden states are not cached
    ctx.progress("load", 1, 1, lm.model_id)
    check(ctx.cancel)
    return lm


#: What each kind of run does; the returned text is the run's final message.
HANDLERS: dict[str, Callable[[RunContext], str | None]] = {
    RunKind.RETRAIN: _retrain,
    RunKind.RESCORE: _rescore,
    RunKind.GENERATE: _generate,
    RunKind.SEED: _seed,
}


def _generate_on_ray(ctx: RunContext) -> str:
    params = BatchParams.from_dict(ctx.params)
    result = ray_generate(
        ctx.database, params, run_id=ctx.run_id, created_by=ctx.created_by, progress=ctx.progress, cancel=ctx.cancel
    )
    return _generated_message(result)


def _rescore_on_ray(ctx: RunContext) -> str:
    version = int(ctx.params["version"])
    counts = ray_rescore(
        ctx.database, version, ctx.params.get("model"), run_id=ctx.run_id, progress=ctx.progress, cancel=ctx.cancel
    )
    return _rescored_message(counts, version)


#: On Ray, bulk runs fan out to model replicas; the others run in the Ray task like a local worker.
RAY_HANDLERS: dict[str, Callable[[RunContext], str | None]] = {
    **HANDLERS,
    RunKind.GENERATE: _generate_on_ray,
    RunKind.RESCORE: _rescore_on_ray,
}


def run_in_ray_worker(database_url: str, run_id: int) -> str:
    """A Ray task's body: run `run_id` against its row, as a local worker process would."""
    from db import open_database

    worker_defaults()
    database = open_database(database_url, migrate=False)
    try:
        return execute_run(database, run_id, on_ray=True)
    finally:
        database.dispose()


def execute_run(database, run_id: int, *, claimed: bool = False, on_ray: bool = False) -> str:
    """One run from start to its final status (`claimed`: this process already holds it).

    `on_ray`: this is a Ray task, maybe on another machine. It records no pid (the app could
    not check a pid of another machine; the heartbeat tells whether it lives), and bulk runs
    go through Ray Data pipelines of model replicas instead of this process's model."""
    with database.sessions() as session, session.begin():
        run = get_run(session, run_id) if claimed else mark_started(session, run_id, None if on_ray else os.getpid())
        kind, params_json, created_by = run.kind, dict(run.params or {}), run.created_by
    cancel = CancelToken()
    beat = _Beat(database, run_id, cancel)
    beat.thread.start()
    started = time.perf_counter()
    status, error = RunStatus.FAILED, None
    try:
        handler = (RAY_HANDLERS if on_ray else HANDLERS).get(kind)
        if handler is None:
            raise UserError(f"unknown run kind {kind!r}")
        message = handler(RunContext(database, run_id, params_json, created_by, beat, cancel))
        status = RunStatus.SUCCEEDED
        if message is not None:
            with database.sessions() as session, session.begin():
                finish(
                    session,
                    run_id,
                    RunStatus.SUCCEEDED,
                    message=message,
                    timings={"total_s": time.perf_counter() - started},
                )
    except Cancelled:
        status, error = RunStatus.CANCELLED, None
    except UserError as exc:
        status, error = RunStatus.FAILED, str(exc)
    except Exception as exc:
        traceback.print_exc()
        status, error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
    finally:
        beat.stop.set()
        beat.thread.join(timeout=5)
        if status != RunStatus.SUCCEEDED:
            with database.sessions() as session, session.begin():
                if get_run(session, run_id).status in (RunStatus.QUEUED, RunStatus.RUNNING):
                    finish(
                        session,
                        run_id,
                        status,
                        error=error,
                        message=beat.message,
                        timings={"total_s": time.perf_counter() - started},
                    )
    return str(status)


def worker_main(database, run_id: int | None) -> str:
    """A worker process: its own run first, then stay warm (model and imports loaded) for the
    next unassigned run, so a retrain after a few corrections does not pay the start-up again."""

    status = "idle"
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
            if taken:
                marker.unlink(missing_ok=True)
                status = execute_run(database, candidate, claimed=True)
                deadline = time.monotonic() + settings.worker_idle_seconds()
                continue
            time.sleep(IDLE_POLL_SECONDS)
    except Exception:
        traceback.print_exc()
    finally:
        marker.unlink(missing_ok=True)
    return status
