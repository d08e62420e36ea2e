"""Executing one run (retrain, re-score, batch generation, demo seed) against its row.

A run's row is the single source of truth: a heartbeat thread writes stage, progress and
message every second and reads the cancel flag. `RUN_KINDS` is the one table from a run kind
to its params type and what it does (here and on Ray); the process that calls `execute_run`
is `core.orchestration.worker`.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.base.errors import UserError
from core.base.progress import Cancelled, CancelToken, ProgressFn, check
from core.engine.model import lazy_model
from core.orchestration.batch import BatchParams, run_batch
from core.orchestration.label_run import LabelParams, run_label
from core.orchestration.ray_pipelines import ray_generate, ray_rescore
from core.orchestration.rescore import rescore
from core.orchestration.retrain import RetrainParams, retrain
from core.orchestration.run_params import RescoreParams, SeedParams
from core.orchestration.seed import seed_demo
from core.text.readable import plural
from db.models import RunKind, RunStatus
from db.train_runs import beat as write_beat
from db.train_runs import finish, get_run, mark_started

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
        "label": (0.0, 1.0),
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


def _retrain(ctx: RunContext, params: RetrainParams) -> str | None:
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


def _rescore(ctx: RunContext, params: RescoreParams) -> str:
    counts = rescore(ctx.database, _model(ctx), params.probe_version, progress=ctx.progress, cancel=ctx.cancel)
    return _rescored_message(counts, params.probe_version)


def _rescored_message(counts: dict[str, int], version: int) -> str:
    return f"scored {plural(counts['scored'], 'answer')} with v{version}" + (
        f"; stored tokens of {counts['tokens_added']}" if counts["tokens_added"] else ""
    )


def _generate(ctx: RunContext, params: BatchParams) -> str:
    result = run_batch(
        ctx.database,
        _model(ctx),
        params,
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


def _seed(ctx: RunContext, params: SeedParams) -> str:
    result = seed_demo(ctx.database, _model(ctx), size=params.size, progress=ctx.progress, cancel=ctx.cancel)
    if result.get("skipped"):
        return "the demo data already exists"
    note = "" if result.get("activated", True) else " (not made active: another probe was promoted meanwhile)"
    return f"demo: {plural(result['answers'], 'answer')}, probe v{result['probe_version']}{note}"


def _label(ctx: RunContext, params: LabelParams) -> str:
    """An LLM judge labels a dataset (no model here: the judge is an HTTP endpoint)."""
    summary = run_label(ctx.database, params, run_id=ctx.run_id, progress=ctx.progress, cancel=ctx.cancel)
    return summary.message()


def _model(ctx: RunContext):
    ctx.progress("load", 0, 1, "loading the model")
    lm = lazy_model(ctx.params.get("model"))  # weights only if some hidden states are not cached
    ctx.progress("load", 1, 1, lm.model_id)
    check(ctx.cancel)
    return lm


def _generate_on_ray(ctx: RunContext, params: BatchParams) -> str:
    result = ray_generate(
        ctx.database, params, run_id=ctx.run_id, created_by=ctx.created_by, progress=ctx.progress, cancel=ctx.cancel
    )
    return _generated_message(result)


def _rescore_on_ray(ctx: RunContext, params: RescoreParams) -> str:
    counts = ray_rescore(
        ctx.database, params.probe_version, params.model, run_id=ctx.run_id, progress=ctx.progress, cancel=ctx.cancel
    )
    return _rescored_message(counts, params.probe_version)


Handler = Callable[[RunContext, Any], str | None]


@dataclass(frozen=True)
class RunKindSpec:
    """A run kind: its params type (read from the row's JSON with `from_dict`), what it does in a
    local worker, and what it does in a Ray task (bulk runs fan out to model replicas there).
    A handler's returned text is the run's final message (None: it finished the row itself)."""

    params: Any  # a class with from_dict(dict) -> params and to_dict()
    local: Handler
    on_ray: Handler


#: The one table from run kind to params type and handler.
RUN_KINDS: dict[str, RunKindSpec] = {
    RunKind.RETRAIN: RunKindSpec(RetrainParams, _retrain, _retrain),
    RunKind.RESCORE: RunKindSpec(RescoreParams, _rescore, _rescore_on_ray),
    RunKind.GENERATE: RunKindSpec(BatchParams, _generate, _generate_on_ray),
    RunKind.SEED: RunKindSpec(SeedParams, _seed, _seed),
    RunKind.LABEL: RunKindSpec(LabelParams, _label, _label),
}


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
        spec = RUN_KINDS.get(kind)
        if spec is None:
            raise UserError(f"unknown run kind {kind!r}")
        handler = spec.on_ray if on_ray else spec.local
        message = handler(
            RunContext(database, run_id, params_json, created_by, beat, cancel), spec.params.from_dict(params_json)
        )
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
