"""Cached per-token probe scores (probe version x generation), so heatmaps need no model run."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.base.errors import UserError
from db.arrays import pack_floats, unpack_floats
from db.models import Prediction, Probe


def _probe_id(session: Session, version: int) -> int:
    """The row id of probe `version` (looked up here: db.probes sits above this module)."""
    probe_id = session.scalar(select(Probe.id).where(Probe.version == version))
    if probe_id is None:
        raise UserError(f"unknown probe version {version}")
    return probe_id


def store_scores(session: Session, probe_version: int, generation_id: int, scores: Sequence[float]) -> Prediction:
    probe_id = _probe_id(session, probe_version)
    row = session.scalar(
        select(Prediction).where(Prediction.probe_id == probe_id, Prediction.generation_id == generation_id)
    )
    if row is None:
        row = Prediction(probe_id=probe_id, generation_id=generation_id, scores=pack_floats(scores))
        session.add(row)
    else:
        row.scores = pack_floats(scores)
    session.flush()
    return row


def scores_for(session: Session, probe_version: int, generation_id: int) -> list[float] | None:
    probe_id = _probe_id(session, probe_version)
    row = session.scalar(
        select(Prediction).where(Prediction.probe_id == probe_id, Prediction.generation_id == generation_id)
    )
    return unpack_floats(row.scores) if row is not None else None


def scored_generation_ids(session: Session, probe_version: int) -> set[int]:
    """Ids of the answers that have cached scores of probe `probe_version` (UserError if unknown)."""
    probe_id = _probe_id(session, probe_version)
    return set(session.scalars(select(Prediction.generation_id).where(Prediction.probe_id == probe_id)))


def has_scores(session: Session, probe_id: int, generation_id: int) -> bool:
    """Whether the answer has cached scores of the probe row `probe_id`."""
    query = select(Prediction.id).where(Prediction.probe_id == probe_id, Prediction.generation_id == generation_id)
    return session.scalar(query) is not None
