"""Background runs (retrain, re-score) as rows: one at a time, alive only while they beat.

A run is done by a separate worker process (`python -m core.orchestration.worker --run N`) so it
survives page reloads and server restarts. The row is the only shared state: the worker
writes its stage, progress and a heartbeat; the page reads them and may set
`cancel_requested`. A worker that dies without finishing (`kill -9`, power loss) stops
beating; the next look at the table marks its run failed with that reason, so a crash
never blocks the next start.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, overload

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core.base import settings
from core.base.errors import UserError
from core.base.processes import process_alive
from db.engine import rows_matched
from db.events import log_event
from db.models import RunKind, RunStatus, TrainRun, User, utcnow

ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
QUEUED_GRACE = timedelta(seconds=120)  # a worker that never started (import error, no resources)


@overload
def _aware(moment: datetime) -> datetime: ...
@overload
def _aware(moment: None) -> None: ...
def _aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if moment is None:
        return None

    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _death_reason(run: TrainRun, now: datetime) -> str | None:
    if run.status not in ACTIVE:
        return None
    if run.pid and not process_alive(run.pid):
        return (
            f"the worker process (pid {run.pid}) ended without finishing, at stage "
            f"'{run.stage or 'start'}' — killed or crashed; nothing was registered"
        )
    beat = _aware(run.heartbeat_at) or _aware(run.started_at)
    if (
        run.status == RunStatus.RUNNING
        and beat is not None
        and now - beat > timedelta(seconds=settings.worker_stale_seconds())
    ):
        return (
            f"no heartbeat for {int((now - beat).total_seconds())} s at stage '{run.stage or 'start'}'; presumed dead"
        )
    if run.status == RunStatus.QUEUED and not run.pid and now - _aware(run.created_at) > QUEUED_GRACE:
        return "the worker never started"
    return None


def reap_dead(session: Session) -> list[TrainRun]:
    """Mark runs whose worker is gone as failed; returns them."""
    now = utcnow()
    reaped = []
    for run in session.scalars(select(TrainRun).where(TrainRun.status.in_(ACTIVE))):
        reason = _death_reason(run, now)
        if reason:
            run.status, run.error, run.finished_at = RunStatus.FAILED, reason, now
            log_event(
                session,
                user=None,
                action=f"{run.kind}.failed",
                entity="train_run",
                entity_id=run.id,
                after={"error": reason},
            )
            reaped.append(run)
    session.flush()
    return reaped


def _lock(session: Session) -> None:
    """Serialise starts: SQLite already holds the write lock (BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7412093)"))


def running_run(session: Session, kind: str | None = None) -> TrainRun | None:
    query = select(TrainRun).where(TrainRun.status.in_(ACTIVE)).order_by(TrainRun.id)
    if kind:
        query = query.where(TrainRun.kind == kind)
    return session.scalar(query.execution_options(populate_existing=True))


def create_run(session: Session, kind: str, params: dict[str, Any], actor: User | None) -> TrainRun:
    """A queued run, unless one is already running (then one clear refusal)."""
    if kind not in {k.value for k in RunKind}:
        raise UserError(f"unknown run kind {kind!r}")
    _lock(session)
    reap_dead(session)
    busy = running_run(session, kind)  # one run of each kind at a time; different kinds may overlap
    if busy is not None:
        creator = session.get(User, busy.created_by) if busy.created_by else None
        who = f" (started by {creator.name})" if creator else ""
        raise UserError(
            f"a {busy.kind} is already running (run {busy.id}, {busy.stage or busy.status}){who}; "
            "wait for it or cancel it"
        )
    run = TrainRun(
        kind=kind,
        status=RunStatus.QUEUED,
        params=params,
        created_by=actor.id if actor else None,
        timings={},
        progress=0.0,
        cancel_requested=False,
    )
    session.add(run)
    session.flush()
    log_event(session, user=actor, action=f"{kind}.start", entity="train_run", entity_id=run.id, after=params)
    return run


def get_run(session: Session, run_id: int) -> TrainRun:
    run = session.get(TrainRun, run_id, populate_existing=True)
    if run is None:
        raise UserError(f"unknown run {run_id}")
    return run


def list_runs(session: Session, limit: int = 20) -> list[TrainRun]:
    reap_dead(session)
    return list(session.scalars(select(TrainRun).order_by(TrainRun.id.desc()).limit(limit)))


def latest_run(session: Session, kind: str | None = None) -> TrainRun | None:
    query = select(TrainRun).order_by(TrainRun.id.desc()).limit(1)
    if kind:
        query = query.where(TrainRun.kind == kind)
    return session.scalar(query.execution_options(populate_existing=True))


def request_cancel(session: Session, run_id: int, actor: User | None) -> TrainRun:
    run = get_run(session, run_id)
    if run.status not in ACTIVE:
        raise UserError(f"run {run_id} is not running ({run.status})")
    run.cancel_requested = True
    log_event(session, user=actor, action=f"{run.kind}.cancel", entity="train_run", entity_id=run.id)
    session.flush()
    return run


def claim(session: Session, run_id: int, pid: int, *, only_unassigned: bool = False) -> bool:
    """Atomically take a queued run for the worker `pid`; False if someone else has it."""
    from sqlalchemy import update

    query = update(TrainRun).where(TrainRun.id == run_id, TrainRun.status == RunStatus.QUEUED)
    if only_unassigned:
        query = query.where(TrainRun.pid.is_(None))
    now = utcnow()
    result = session.execute(
        query.values(status=RunStatus.RUNNING, pid=pid, started_at=now, heartbeat_at=now).execution_options(
            synchronize_session=False
        )
    )
    return rows_matched(result) == 1


def next_unassigned(session: Session) -> int | None:
    """The oldest queued run no worker process was started for (an idle worker may take it)."""
    return session.scalar(
        select(TrainRun.id)
        .where(TrainRun.status == RunStatus.QUEUED, TrainRun.pid.is_(None))
        .order_by(TrainRun.id)
        .limit(1)
    )


def mark_started(session: Session, run_id: int, pid: int | None) -> TrainRun:
    run = get_run(session, run_id)
    if run.status != RunStatus.QUEUED:
        raise UserError(f"run {run_id} is {run.status}, not queued")
    now = utcnow()
    run.status, run.pid, run.started_at, run.heartbeat_at = RunStatus.RUNNING, pid, now, now
    session.flush()
    return run


def beat(
    session: Session,
    run_id: int,
    *,
    stage: str | None,
    progress: float,
    message: str | None,
    timings: dict[str, Any] | None = None,
) -> bool:
    """Record progress and a heartbeat; returns whether a cancel was requested."""
    run = get_run(session, run_id)
    if run.status != RunStatus.RUNNING:
        return True  # reaped or finished meanwhile: stop
    run.stage, run.progress, run.message, run.heartbeat_at = stage, float(progress), message, utcnow()
    if timings is not None:
        run.timings = dict(timings)
    session.flush()
    return bool(run.cancel_requested)


def finish(
    session: Session,
    run_id: int,
    status: str,
    *,
    error: str | None = None,
    probe_id: int | None = None,
    timings: dict[str, Any] | None = None,
    message: str | None = None,
) -> TrainRun:
    if status not in FINISHED:
        raise ValueError(status)
    run = get_run(session, run_id)
    run.status, run.error, run.finished_at = status, error, utcnow()
    if probe_id is not None:
        run.probe_id = probe_id
    if timings is not None:
        run.timings = dict(timings)
    if message is not None:
        run.message = message
    if status == RunStatus.SUCCEEDED:
        run.progress = 1.0
    log_event(
        session,
        user=None,
        action=f"{run.kind}.{status}",
        entity="train_run",
        entity_id=run.id,
        after={"error": error, "probe_id": probe_id},
    )
    session.flush()
    return run


def eta_seconds(run: TrainRun, now: datetime | None = None) -> float | None:
    """Time left as the worker measured it at its last heartbeat (`timings["eta_s"]`, written
    only once the current stage's pace is measured), less the time since: None until then."""
    timings = run.timings or {}
    beat_at = _aware(run.heartbeat_at)
    eta = timings.get("eta_s")
    if run.status != RunStatus.RUNNING or beat_at is None or not isinstance(eta, int | float):
        return None
    return max(0.0, float(eta) - ((now or utcnow()) - beat_at).total_seconds())


def describe(run: TrainRun) -> dict[str, Any]:
    """A JSON-ready view for pages and the CLI."""
    return {
        "eta_s": eta_seconds(run),
        "id": run.id,
        "kind": run.kind,
        "status": run.status,
        "stage": run.stage,
        "progress": run.progress,
        "message": run.message,
        "error": run.error,
        "params": run.params,
        "timings": run.timings,
        "probe_id": run.probe_id,
        "pid": run.pid,
        "cancel_requested": run.cancel_requested,
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


OUTCOME_NEWS_SECONDS = 120


def outcome_is_news(run: dict[str, Any], now: datetime | None = None) -> bool:
    """Whether a finished run (as `describe` gives it) ended recently enough for its outcome box
    to still be shown; older outcomes clutter a page whose tables already tell them."""
    finished = run.get("finished_at")
    if not finished:
        return True
    ended = datetime.fromisoformat(finished)
    ended = ended if ended.tzinfo else ended.replace(tzinfo=UTC)
    return ((now or utcnow()) - ended).total_seconds() < OUTCOME_NEWS_SECONDS
