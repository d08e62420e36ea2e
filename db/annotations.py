"""Annotation sets: one per (generation, owner), replaced whole, versioned, every save audited.

Concurrency is optimistic: a save names the version the client loaded and is refused with
ConflictError if anyone stored a newer one meanwhile, so nobody's work is silently lost.
The check is a conditional UPDATE (or the unique constraint for a first save), which is
atomic on SQLite and on PostgreSQL alike.

Functions take a Session and never commit: the caller owns the transaction (for example
`db.engine.transaction`). A raised error leaves nothing written by that call.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.base.errors import UserError
from core.base.types import Span
from core.text.tokens import canonical_label, nfc
from db.engine import rows_matched
from db.events import log_event
from db.models import (
    GOLD_OWNER,
    AnnotationSet,
    Event,
    Generation,
    SpanRow,
    User,
    utcnow,
)

ENTITY = "annotation_set"


class ConflictError(UserError):
    """Someone else saved the set after this client loaded it; carries what is stored now."""

    def __init__(self, message: str, *, current_version: int, saved_by: str | None, current_spans: list[Span]) -> None:
        super().__init__(message)
        self.current_version = current_version
        self.saved_by = saved_by
        self.current_spans = current_spans


# --- owners and reading ---------------------------------------------------------------


def owner_key(user: User | None) -> str:
    """The owner column value: "user:<id>" for a person's set, "gold" for the reference set."""
    return GOLD_OWNER if user is None else f"user:{user.id}"


def get_set(session: Session, generation_id: int, owner: User | None) -> AnnotationSet | None:
    query = select(AnnotationSet).where(
        AnnotationSet.generation_id == generation_id, AnnotationSet.owner == owner_key(owner)
    )
    # populate_existing: a long-lived session must not hand back a version it cached earlier.
    return session.scalar(query.execution_options(populate_existing=True))


def sets_for_generation(session: Session, generation_id: int) -> list[AnnotationSet]:
    query = select(AnnotationSet).where(AnnotationSet.generation_id == generation_id).order_by(AnnotationSet.id)
    return list(session.scalars(query.execution_options(populate_existing=True)))


def _sorted(spans: list[Span]) -> list[Span]:
    return sorted(spans, key=lambda s: (s.start, s.end, s.label, s.note or ""))


def spans_of(annotation_set: AnnotationSet) -> list[Span]:
    return _sorted([Span(row.start, row.end, row.label, row.note) for row in annotation_set.spans])


def _stored_spans(session: Session, set_id: int) -> list[Span]:
    """Straight from the table, bypassing any collection the session has cached."""
    rows = session.execute(
        select(SpanRow.start, SpanRow.end, SpanRow.label, SpanRow.note).where(SpanRow.set_id == set_id)
    ).all()
    return _sorted([Span(*row) for row in rows])


# --- validation -----------------------------------------------------------------------


def _describe(span: Span) -> str:
    return f"span {span.start}-{span.end} ({span.label})"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_bounds(span: Span, length: int) -> None:
    if not (_is_int(span.start) and _is_int(span.end) and 0 <= span.start < span.end <= length):
        raise UserError(f"{_describe(span)} is outside the text (need 0 <= start < end <= {length})")


def _check_overlaps(spans: list[Span]) -> None:
    """Spans sorted by start: only later spans starting before this one ends can overlap it."""
    for i, first in enumerate(spans):
        for second in spans[i + 1 :]:
            if second.start >= first.end:
                break
            if second.label != first.label:
                raise UserError(f"{_describe(first)} overlaps {_describe(second)} with a different label")


def validate_spans(text: str, spans: list[Span]) -> list[Span]:
    """Canonical labels, in-bounds offsets, no conflicting overlaps; deduplicated and sorted."""
    cleaned: list[Span] = []
    for span in spans:
        span = Span(span.start, span.end, canonical_label(span.label), span.note)
        _check_bounds(span, len(text))
        if span not in cleaned:
            cleaned.append(span)
    cleaned = _sorted(cleaned)
    _check_overlaps(cleaned)
    return cleaned


# --- conflicts ------------------------------------------------------------------------


def _conflict_message(current: int, expected: int, saved_by: str | None) -> str:
    tail = "your changes were not saved"
    if current == 0:
        return f"conflict: the annotation set no longer exists (you loaded version {expected}); {tail}"
    if current < expected:
        return f"conflict: the stored version is {current}, not the version {expected} you loaded; {tail}"
    return f"conflict: {saved_by or 'someone'} saved version {current} after you loaded version {expected}; {tail}"


def _conflict(session: Session, generation_id: int, owner: str, expected: int) -> ConflictError:
    """Read what is stored now (fresh statements, so committed rivals are visible)."""
    row = session.execute(
        select(AnnotationSet.id, AnnotationSet.version, User.name)
        .outerjoin(User, User.id == AnnotationSet.updated_by)
        .where(AnnotationSet.generation_id == generation_id, AnnotationSet.owner == owner)
    ).first()
    if row is None:
        return ConflictError(_conflict_message(0, expected, None), current_version=0, saved_by=None, current_spans=[])
    set_id, version, saved_by = row
    return ConflictError(
        _conflict_message(version, expected, saved_by),
        current_version=version,
        saved_by=saved_by,
        current_spans=_stored_spans(session, set_id),
    )


# --- saving ---------------------------------------------------------------------------


def _user_id(user: User | None) -> int | None:
    return None if user is None else user.id


def _insert_first(session: Session, generation_id: int, owner: User | None, actor: User | None) -> int | None:
    """Create version 1; None if a rival created the set first (unique constraint)."""
    new = AnnotationSet(
        generation_id=generation_id,
        owner=owner_key(owner),
        annotator_id=_user_id(owner),
        version=1,
        updated_by=_user_id(actor),
        updated_at=utcnow(),
    )
    try:
        # The savepoint keeps the caller's transaction usable after a unique violation.
        with session.begin_nested():
            session.add(new)
    except IntegrityError as error:
        if _set_exists(session, generation_id, new.owner):
            return None
        # Not the unique constraint: an owner or actor that is not in the users table.
        raise UserError(f"cannot create the annotation set: unknown owner or actor ({error.orig})") from None
    return new.id


def _set_exists(session: Session, generation_id: int, owner: str) -> bool:
    query = select(AnnotationSet.id).where(AnnotationSet.generation_id == generation_id, AnnotationSet.owner == owner)
    return session.scalar(query) is not None


def _bump_version(session: Session, generation_id: int, owner: str, expected: int, actor: User | None) -> int | None:
    """Atomically take version expected+1; None if the stored version is not `expected`.

    The version test sits in the UPDATE's WHERE clause, so of two rivals holding the same
    version exactly one matches a row (PostgreSQL re-checks it after the row lock; SQLite
    has one writer at a time).
    """
    set_id = session.scalar(
        select(AnnotationSet.id).where(AnnotationSet.generation_id == generation_id, AnnotationSet.owner == owner)
    )
    if set_id is None:
        return None
    statement = (
        update(AnnotationSet)
        .where(AnnotationSet.id == set_id, AnnotationSet.version == expected)
        .values(version=AnnotationSet.version + 1, updated_by=_user_id(actor), updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return set_id if rows_matched(session.execute(statement)) == 1 else None


def _replace_spans(session: Session, set_id: int, spans: list[Span]) -> None:
    # "fetch" evicts the deleted rows from the identity map; SQLite may reuse their ids at once.
    session.execute(delete(SpanRow).where(SpanRow.set_id == set_id).execution_options(synchronize_session="fetch"))
    session.add_all(SpanRow(set_id=set_id, start=s.start, end=s.end, label=s.label, note=s.note) for s in spans)
    session.flush()


def _as_json(version: int, spans: list[Span]) -> dict[str, Any]:
    return {
        "version": version,
        "spans": [{"start": s.start, "end": s.end, "label": s.label, "note": s.note} for s in spans],
    }


def _load_generation(session: Session, generation_id: int) -> Generation:
    generation = session.get(Generation, generation_id)
    if generation is None:
        raise UserError(f"unknown generation {generation_id}")
    return generation


def _reloaded(session: Session, set_id: int) -> AnnotationSet:
    # The UPDATE and the span rewrite bypassed the identity map: reload both.
    annotation_set = session.get(AnnotationSet, set_id, populate_existing=True)
    assert annotation_set is not None, "the set was just updated in this transaction"
    session.expire(annotation_set, ["spans"])
    return annotation_set


def save_annotation_set(
    session: Session,
    generation_id: int,
    spans: list[Span],
    *,
    owner: User | None,
    expected_version: int,
    actor: User | None,
    action: str = "annotation.save",
    detail: str | None = None,
) -> AnnotationSet:
    """Replace the set's spans if it is still at `expected_version` (0 = "there was no set").

    Raises ConflictError (nothing written) when someone saved in between, UserError for
    bad spans or an unknown generation. Writes one event per stored save. Does not commit.
    """
    if not _is_int(expected_version) or expected_version < 0:
        raise UserError(f"expected version must be a whole number >= 0, not {expected_version!r}")
    generation = _load_generation(session, generation_id)
    cleaned = validate_spans(nfc(generation.completion), spans)
    owner_value = owner_key(owner)
    if expected_version == 0:
        before_spans: list[Span] = []
        set_id = _insert_first(session, generation_id, owner, actor)
    else:
        set_id = _bump_version(session, generation_id, owner_value, expected_version, actor)
        before_spans = _stored_spans(session, set_id) if set_id is not None else []
    if set_id is None:
        raise _conflict(session, generation_id, owner_value, expected_version)
    _replace_spans(session, set_id, cleaned)
    log_event(
        session,
        user=actor,
        action=action,
        entity=ENTITY,
        entity_id=set_id,
        generation_id=generation_id,
        dataset=generation.dataset.name,
        before=_as_json(expected_version, before_spans),
        after=_as_json(expected_version + 1, cleaned),
        detail=detail,
    )
    return _reloaded(session, set_id)


# --- undo -----------------------------------------------------------------------------


def _latest_event(session: Session, set_id: int) -> Event | None:
    query = select(Event).where(Event.entity == ENTITY, Event.entity_id == set_id).order_by(Event.id.desc()).limit(1)
    return session.scalar(query)


def spans_from_json(data: dict[str, Any]) -> list[Span]:
    return [Span(s["start"], s["end"], s["label"], s.get("note")) for s in data.get("spans", [])]


def undo_last(session: Session, generation_id: int, owner: User | None, actor: User | None) -> AnnotationSet:
    """Store the spans from before the newest change as a new version.

    The undo is itself a save with an event, so it is audited and can be undone in turn
    (undoing twice re-applies the change). Does not commit.
    """
    annotation_set = get_set(session, generation_id, owner)
    if annotation_set is None:
        raise UserError(f"nothing to undo: generation {generation_id} has no {owner_key(owner)} annotation set")
    event = _latest_event(session, annotation_set.id)
    after = event.after if event is not None else None
    if event is None or event.before is None or not after or after.get("version") != annotation_set.version:
        raise UserError("nothing to undo: the latest change to this annotation set is not in the event log")
    return save_annotation_set(
        session,
        generation_id,
        spans_from_json(event.before),
        owner=owner,
        expected_version=annotation_set.version,
        actor=actor,
        action="annotation.undo",
        detail=f"undo of event {event.id} (back to the spans of version {event.before.get('version')})",
    )
