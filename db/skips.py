"""Skips: an annotator passes on an answer, as in Label Studio, Prodigy and Argilla.

A skip is stored (who, what, when) and logged as an event; the answer leaves that person's
default queue and `db.assignments.assign` no longer hands it to them. Their live assignment
of it is handed back (expired), so a reviewer's next *Assign work* gives it to someone else.
Unskipping puts it back. Functions take a Session and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from core.base.errors import UserError
from db.assignments import ASSIGNED, EXPIRED, chunks, clock, utc
from db.engine import rows_matched
from db.events import log_event
from db.models import Assignment, Dataset, Generation, Skip, User

ENTITY = "skip"


def _generation(session: Session, generation_id: object) -> Generation:
    if isinstance(generation_id, bool) or not isinstance(generation_id, int):
        raise UserError(f"an answer id must be a whole number, not {generation_id!r}")
    found = session.get(Generation, generation_id)
    if found is None:
        raise UserError(f"unknown answer #{generation_id}")
    return found


def skip(session: Session, generation_id: int, user: User, *, now: datetime | None = None) -> Skip:
    """Record that `user` skipped the answer (again: the time moves); one `annotation.skip` event."""
    generation = _generation(session, generation_id)
    moment = clock(now)
    found = session.scalar(select(Skip).where(Skip.generation_id == generation_id, Skip.user_id == user.id))
    before = {"skipped_at": utc(found.skipped_at).isoformat()} if found else None
    if found is None:
        found = Skip(generation_id=generation_id, user_id=user.id, skipped_at=moment)
        session.add(found)
    else:
        found.skipped_at = moment
    released = (
        rows_matched(
            session.execute(
                update(Assignment)
                .where(
                    Assignment.generation_id == generation_id,
                    Assignment.user_id == user.id,
                    Assignment.status == ASSIGNED,
                )
                .values(status=EXPIRED)
                .execution_options(synchronize_session="fetch")
            )
        )
        or 0
    )
    session.flush()
    log_event(
        session,
        user=user,
        action="annotation.skip",
        entity=ENTITY,
        entity_id=found.id,
        generation_id=generation_id,
        dataset=generation.dataset.name,
        before=before,
        after={"skipped_at": moment.isoformat(), "assignment_released": bool(released)},
        detail=f"skipped answer #{generation_id}",
    )
    return found


def unskip(session: Session, generation_id: int, user: User) -> bool:
    """Put a skipped answer back in `user`'s queue; False (and nothing logged) if it was not skipped."""
    generation = _generation(session, generation_id)
    found = session.scalar(select(Skip).where(Skip.generation_id == generation_id, Skip.user_id == user.id))
    if found is None:
        return False
    before = {"skipped_at": utc(found.skipped_at).isoformat()}
    session.execute(delete(Skip).where(Skip.id == found.id).execution_options(synchronize_session="fetch"))
    log_event(
        session,
        user=user,
        action="annotation.unskip",
        entity=ENTITY,
        entity_id=found.id,
        generation_id=generation_id,
        dataset=generation.dataset.name,
        before=before,
        detail=f"put answer #{generation_id} back in the queue",
    )
    return True


def skipped_at(session: Session, generation_id: int, user: User) -> datetime | None:
    """When `user` skipped this answer (None: not skipped)."""
    return utc(
        session.scalar(select(Skip.skipped_at).where(Skip.generation_id == generation_id, Skip.user_id == user.id))
    )


@dataclass(frozen=True)
class SkipRow:
    """A skip as the CLI and exports show it (names resolved)."""

    generation_id: int
    dataset: str
    user: str
    skipped_at: datetime | None


def _skip_query():
    return (
        select(Skip, User.name, Dataset.name)
        .join(User, User.id == Skip.user_id)
        .join(Generation, Generation.id == Skip.generation_id)
        .join(Dataset, Dataset.id == Generation.dataset_id)
    )


def list_skips(session: Session, *, user: User | None = None, dataset: str | None = None) -> list[SkipRow]:
    """Skips (by answer, then person), optionally one person's or one dataset's."""
    query = _skip_query()
    if user is not None:
        query = query.where(Skip.user_id == user.id)
    if dataset is not None:
        query = query.where(Dataset.name == dataset)
    rows = session.execute(query.order_by(Skip.generation_id, User.name))
    return [SkipRow(s.generation_id, ds, name, utc(s.skipped_at)) for s, name, ds in rows]


def skips_by_answer(session: Session, generation_ids: list[int]) -> dict[int, list[SkipRow]]:
    """Every skip of these answers, by answer (exports read a chunk at a time)."""
    found: dict[int, list[SkipRow]] = {}
    for chunk in chunks(generation_ids):
        query = _skip_query().where(Skip.generation_id.in_(chunk)).order_by(Skip.generation_id, User.name)
        for s, name, ds in session.execute(query):
            found.setdefault(s.generation_id, []).append(SkipRow(s.generation_id, ds, name, utc(s.skipped_at)))
    return found
