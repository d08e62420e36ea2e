"""A run's row as the plain view pages and the CLI show: its fields and the time left.

The ETA is the worker's measured pace (core.base.progress.eta_seconds), not storage, so it is computed
here from the row db.train_runs returns. Imports no torch: database-only CLI commands use it.
"""

from __future__ import annotations

from typing import Any

from core.base.progress import eta_seconds
from db.models import RunStatus, TrainRun


def run_eta(run: TrainRun) -> float | None:
    """Seconds left for a running run as its worker measured the pace, else None."""
    return eta_seconds(
        running=run.status == RunStatus.RUNNING, measured=(run.timings or {}).get("eta_s"), beat_at=run.heartbeat_at
    )


def describe(run: TrainRun) -> dict[str, Any]:
    """A JSON-ready view for pages and the CLI."""
    return {
        "eta_s": run_eta(run),
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
