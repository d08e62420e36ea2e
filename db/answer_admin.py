"""Work on chosen answers, as Label Studio's and Argilla's data managers do: delete one answer
(its annotations go with it), and bulk actions on many (assign to an annotator, skip for an
annotator, move to a split).

Deleting is the one way to discard: a deleted answer cannot reach a queue, a retrain or an
export, because it no longer exists; its event keeps what it was (dataset, split, the start of
its text, how many annotation sets and spans went with it). Every bulk action checks every id
first (one UserError naming the unknown ones, nothing written) and writes one event saying
what it did. Functions take a Session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from core.base.errors import UserError
from db.assignments import ASSIGNED, DONE, EXPIRED, _users_by_name, chunks, clock, utc
from db.events import log_event
from db.generations import check_split
from db.models import AnnotationSet, Assignment, Event, Generation, Skip, SpanRow, User

MAX_BULK = 10_000
PREVIEW_CHARS = 120


def _answers(session: Session, generation_ids: Sequence[int]) -> list[Generation]:
    """The rows of `generation_ids` (each once, in id order); UserError naming any unknown id."""
    ids = sorted({int(i) for i in generation_ids})
    if not ids:
        raise UserError("no answers chosen")
    if len(ids) > MAX_BULK:
        raise UserError(f"{len(ids)} answers chosen; at most {MAX_BULK} at once")
    rows: list[Generation] = []
    for chunk in chunks(ids):
        rows.extend(session.scalars(select(Generation).where(Generation.id.in_(chunk))))
    missing = sorted(set(ids) - {row.id for row in rows})
    if missing:
        shown = ", ".join(f"#{i}" for i in missing[:10]) + (" …" if len(missing) > 10 else "")
        raise UserError(f"unknown answer{'s' if len(missing) > 1 else ''} {shown}; nothing was changed")
    return sorted(rows, key=lambda row: row.id)


def _datasets(rows: Sequence[Generation]) -> str | None:
    """The one dataset of these answers, for the event's dataset column (None when several)."""
    names = {row.dataset.name for row in rows}
    return names.pop() if len(names) == 1 else None


def _contents(session: Session, generation_id: int) -> dict[str, int]:
    sets = session.scalar(select(func.count(AnnotationSet.id)).where(AnnotationSet.generation_id == generation_id))
    spans = session.scalar(
        select(func.count(SpanRow.id))
        .join(AnnotationSet, AnnotationSet.id == SpanRow.set_id)
        .where(AnnotationSet.generation_id == generation_id)
    )
    return {"annotation_sets": sets or 0, "spans": spans or 0}


def delete_answer(
    session: Session, generation_id: int, actor: User | None, *, action: str = "generation.delete"
) -> Event:
    """Delete one answer with its annotation sets, spans, scores, assignments, skips and comments
    (database cascade); one event whose `before` says what it was and what went with it."""
    row = _answers(session, [generation_id])[0]
    before = {
        "dataset": row.dataset.name,
        "split": row.split,
        "source": row.source,
        "text": row.completion[:PREVIEW_CHARS] + ("…" if len(row.completion) > PREVIEW_CHARS else ""),
        **_contents(session, row.id),
    }
    dataset = row.dataset.name
    session.delete(row)
    session.flush()
    verb = "discarded" if action == "generation.discard" else "deleted"
    return log_event(
        session,
        user=actor,
        action=action,
        entity="generation",
        entity_id=generation_id,
        generation_id=generation_id,
        dataset=dataset,
        before=before,
        detail=f"{verb} answer #{generation_id} with {before['annotation_sets']} annotation sets",
    )


def discard_own(session: Session, generation_id: int, user: User) -> Event:
    """The Generate page's Discard: its maker takes back an answer nobody has labelled yet (it
    leaves every queue because it is gone); anything else is refused with one message."""
    row = _answers(session, [generation_id])[0]
    if row.created_by != user.id:
        raise UserError(f"answer #{generation_id} was not made by you: an admin can delete it on the Data page")
    if _contents(session, row.id)["annotation_sets"]:
        raise UserError(f"answer #{generation_id} already has annotations: an admin can delete it on the Data page")
    return delete_answer(session, generation_id, user, action="generation.discard")


def assign_answers(
    session: Session,
    generation_ids: Sequence[int],
    annotator: str,
    *,
    lease_hours: float = 24,
    actor: User | None,
    now: datetime | None = None,
) -> int:
    """Put the chosen answers in `annotator`'s queue (a lease of `lease_hours`); returns how many
    were new to them. An answer they already hold or finished is left as it is."""
    if not 0 < float(lease_hours) <= 24 * 365:
        raise UserError("lease hours must be more than 0 and at most a year")
    rows = _answers(session, generation_ids)
    person = _users_by_name(session, [annotator])[0]
    moment = clock(now)
    ids = [row.id for row in rows]
    held: dict[int, Assignment] = {}
    for chunk in chunks(ids):
        held.update(
            (a.generation_id, a)
            for a in session.scalars(
                select(Assignment).where(Assignment.user_id == person.id, Assignment.generation_id.in_(chunk))
            )
        )
    lease = {"status": ASSIGNED, "leased_at": moment, "lease_expires_at": moment + timedelta(hours=float(lease_hours))}
    live_now = {  # finished, or a lease that still holds: left as it is
        a.generation_id
        for a in held.values()
        if a.status == DONE
        or (a.status == ASSIGNED and (a.lease_expires_at is None or utc(a.lease_expires_at) > moment))
    }
    renew = [{"id": held[i].id, **lease} for i in ids if i in held and i not in live_now]
    fresh = [{"generation_id": i, "user_id": person.id, **lease} for i in ids if i not in held]
    if fresh:
        session.execute(insert(Assignment), fresh)
    if renew:
        session.execute(update(Assignment), renew)
    made = len(fresh) + len(renew)
    log_event(
        session,
        user=actor,
        action="assignment.bulk",
        entity="assignment",
        dataset=_datasets(rows),
        after={"annotator": person.name, "chosen": len(ids), "assigned": made, "lease_hours": float(lease_hours)},
        detail=f"assigned {made} of {len(ids)} chosen answers to {person.name}",
    )
    return made


def skip_answers(
    session: Session, generation_ids: Sequence[int], annotator: str, *, actor: User | None, now: datetime | None = None
) -> int:
    """Skip the chosen answers for `annotator`: they leave that person's default queue and their
    live leases of them are handed back; returns how many were newly skipped."""
    rows = _answers(session, generation_ids)
    person = _users_by_name(session, [annotator])[0]
    moment = clock(now)
    ids = [row.id for row in rows]
    already: set[int] = set()
    for chunk in chunks(ids):
        already.update(
            session.scalars(select(Skip.generation_id).where(Skip.user_id == person.id, Skip.generation_id.in_(chunk)))
        )
    session.add_all(Skip(generation_id=i, user_id=person.id, skipped_at=moment) for i in ids if i not in already)
    for chunk in chunks(ids):
        session.execute(
            update(Assignment)
            .where(Assignment.user_id == person.id, Assignment.generation_id.in_(chunk), Assignment.status == ASSIGNED)
            .values(status=EXPIRED)
            .execution_options(synchronize_session=False)
        )
    session.flush()
    newly = len(ids) - len(already)
    log_event(
        session,
        user=actor,
        action="annotation.skip_bulk",
        entity="skip",
        dataset=_datasets(rows),
        after={"annotator": person.name, "chosen": len(ids), "skipped": newly},
        detail=f"skipped {newly} of {len(ids)} chosen answers for {person.name}",
    )
    return newly


def move_to_split(session: Session, generation_ids: Sequence[int], split: str, *, actor: User | None) -> int:
    """Move the chosen answers to `split` (train, validation, test, …); returns how many moved."""
    target = check_split(split)
    rows = _answers(session, generation_ids)
    moving = [row for row in rows if row.split != target]
    before: dict[str, int] = {}
    for row in moving:
        before[row.split] = before.get(row.split, 0) + 1
        row.split = target
    session.flush()
    log_event(
        session,
        user=actor,
        action="generation.split",
        entity="generation",
        dataset=_datasets(rows),
        before={"from": before},
        after={"split": target, "chosen": len(rows), "moved": len(moving)},
        detail=f"moved {len(moving)} of {len(rows)} chosen answers to {target}",
    )
    return len(moving)


def answers_overview(session: Session, dataset: str, *, limit: int = 2000) -> list[dict]:
    """The answers of a dataset for choosing some (id order): split, source, the start of the
    text, annotation sets, and who holds a live lease of each."""
    from db.generations import get_dataset

    found = get_dataset(session, dataset)
    rows = list(
        session.scalars(
            select(Generation).where(Generation.dataset_id == found.id).order_by(Generation.id).limit(limit)
        )
    )
    ids = [row.id for row in rows]
    sets: dict[int, int] = {}
    holders: dict[int, list[str]] = {}
    moment = clock(None)
    for chunk in chunks(ids):
        sets.update(
            session.execute(
                select(AnnotationSet.generation_id, func.count(AnnotationSet.id))
                .where(AnnotationSet.generation_id.in_(chunk))
                .group_by(AnnotationSet.generation_id)
            ).all()
        )
        for generation_id, name, expires in session.execute(
            select(Assignment.generation_id, User.name, Assignment.lease_expires_at)
            .join(User, User.id == Assignment.user_id)
            .where(Assignment.generation_id.in_(chunk), Assignment.status == ASSIGNED)
        ):
            if expires is None or utc(expires) > moment:
                holders.setdefault(generation_id, []).append(name)
    return [
        {
            "id": row.id,
            "split": row.split,
            "source": row.source,
            "text": row.completion[:PREVIEW_CHARS],
            "annotation sets": sets.get(row.id, 0),
            "assigned to": ", ".join(sorted(holders.get(row.id, []))),
        }
        for row in rows
    ]
