"""The reviewer's view of one generation, and turning annotators' work into the gold set.

A reviewer sees every annotator's spans side by side with the probe's predicted spans and
the places where they disagree, then either picks one annotator's set or saves a merge as
gold. Gold is an ordinary versioned annotation set (owner "gold"), so two reviewers cannot
overwrite each other, and every gold save is a "review.gold" event whose detail records
the decision ("picked alice", "merged", ...).

Functions take a Session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.analysis.review_compare import ReviewRecord
from core.base.errors import UserError
from core.base.types import Span
from core.text.editing import removed_spans
from core.text.tokens import nfc
from db.annotations import ENTITY, get_set, save_annotation_set, sets_for_generation, spans_from_json, spans_of
from db.generations import get_generation, to_core, trace_of
from db.models import GOLD_OWNER, AnnotationSet, Event, User
from db.predictions import scores_for
from db.users import get_user

REVIEW_ACTION = "review.gold"
REVIEW_ROLES = ("reviewer", "admin")
MAX_DECISION = 500


# --- the record ---------------------------------------------------------------------------


def _annotator_names(session: Session, generation_id: int) -> dict[int, str]:
    """set id -> the annotator's name (the owner key if the account is gone)."""
    query = (
        select(AnnotationSet.id, AnnotationSet.owner, User.name)
        .outerjoin(User, User.id == AnnotationSet.annotator_id)
        .where(AnnotationSet.generation_id == generation_id, AnnotationSet.owner != GOLD_OWNER)
    )
    return {set_id: name or owner for set_id, owner, name in session.execute(query)}


def _split_sets(
    session: Session, generation_id: int
) -> tuple[dict[str, tuple[int, list[Span]]], tuple[int, list[Span]] | None]:
    names = _annotator_names(session, generation_id)
    annotators: dict[str, tuple[int, list[Span]]] = {}
    gold = None
    for annotation_set in sets_for_generation(session, generation_id):
        entry = (annotation_set.version, spans_of(annotation_set))
        if annotation_set.owner == GOLD_OWNER:
            gold = entry
        else:
            annotators[names.get(annotation_set.id, annotation_set.owner)] = entry
    return dict(sorted(annotators.items())), gold


def review_record(session: Session, generation_id: int, probe_version: int | None) -> ReviewRecord:
    """What storage holds for reviewing one generation: the answer, its sets by annotator, the
    gold set and the cached scores of `probe_version` (None: no probe). The comparison is
    core.analysis.review_compare's; an unknown version is a UserError."""
    row = get_generation(session, generation_id)
    annotators, gold = _split_sets(session, generation_id)
    return ReviewRecord(
        generation_id=row.id,
        dataset=row.dataset.name,
        generation=to_core(row),
        trace=trace_of(row),
        annotators=annotators,
        gold=gold,
        probe_version=probe_version,
        probe_scores=scores_for(session, probe_version, generation_id) if probe_version is not None else None,
    )


# --- deciding gold ----------------------------------------------------------------------


def _check_reviewer(reviewer: User | None) -> None:
    if reviewer is None or reviewer.role not in REVIEW_ROLES or not reviewer.active:
        raise UserError("only an active reviewer or admin can save the gold set")


def _clean_decision(decision: object) -> str:
    cleaned = " ".join(decision.split()) if isinstance(decision, str) else ""
    if not cleaned:
        raise UserError('a gold save needs a decision (for example "picked alice" or "merged")')
    if len(cleaned) > MAX_DECISION:
        raise UserError(f"the decision is longer than {MAX_DECISION} characters")
    return cleaned


class GoldRemovalError(UserError):
    """A gold save that would take spans away from the gold set, not yet confirmed.

    `removed` lists them, so the page can say which and ask; nothing was written."""

    def __init__(self, removed: list[Span], text: str) -> None:
        self.removed = removed
        shown = ", ".join(repr(text[s.start : s.end]) for s in removed[:5])
        more = f" and {len(removed) - 5} more" if len(removed) > 5 else ""
        noun = "span" if len(removed) == 1 else "spans"
        super().__init__(f"this save would remove {len(removed)} gold {noun} ({shown}{more}); confirm to remove them")


def save_gold(
    session: Session,
    generation_id: int,
    spans: list[Span],
    *,
    expected_version: int,
    reviewer: User,
    decision: str,
    allow_removal: bool = False,
) -> AnnotationSet:
    """Store `spans` as the gold set if it is still at `expected_version` (0 = no gold yet).

    The decision goes into the "review.gold" event's detail, so the log says not only what
    gold became but why. ConflictError (nothing written) if another reviewer got there first;
    GoldRemovalError (nothing written) if the save drops or changes spans of the current gold
    and `allow_removal` is not set: gold is never lost without a reviewer saying so.
    """
    _check_reviewer(reviewer)
    decision = _clean_decision(decision)
    current = get_set(session, generation_id, None)
    if not allow_removal and current is not None and current.version == expected_version:
        removed = removed_spans(spans_of(current), spans)
        if removed:
            raise GoldRemovalError(removed, nfc(get_generation(session, generation_id).completion))
    return save_annotation_set(
        session,
        generation_id,
        spans,
        owner=None,
        expected_version=expected_version,
        actor=reviewer,
        action=REVIEW_ACTION,
        detail=decision,
    )


@dataclass(frozen=True)
class GoldVersion:
    """One version of an answer's gold set, as the event log recorded it."""

    version: int
    at: datetime
    by: str | None
    action: str
    decision: str | None
    spans: list[Span]


def gold_history(session: Session, generation_id: int) -> list[GoldVersion]:
    """Every stored version of the gold set, oldest first (from the append-only event log)."""
    current = get_set(session, generation_id, None)
    if current is None:
        return []
    query = (
        select(Event, User.name)
        .outerjoin(User, User.id == Event.user_id)
        .where(Event.entity == ENTITY, Event.entity_id == current.id)
        .order_by(Event.id)
    )
    history: list[GoldVersion] = []
    for event, name in session.execute(query):
        after = event.after or {}
        if "version" not in after:
            continue
        history.append(
            GoldVersion(int(after["version"]), event.at, name, event.action, event.detail, spans_from_json(after))
        )
    return history


def revert_gold(
    session: Session, generation_id: int, version: int, *, expected_version: int, reviewer: User
) -> AnnotationSet:
    """Gold := the spans it had at `version`, stored as a new version (audited, revertible)."""
    found = [entry for entry in gold_history(session, generation_id) if entry.version == version]
    if not found:
        raise UserError(f"answer #{generation_id} has no gold version {version} in the event log")
    return save_gold(
        session,
        generation_id,
        found[-1].spans,
        expected_version=expected_version,
        reviewer=reviewer,
        decision=f"reverted to gold version {version}",
        allow_removal=True,
    )


def pick_annotator(
    session: Session,
    generation_id: int,
    annotator: str,
    *,
    expected_version: int,
    reviewer: User,
    allow_removal: bool = False,
) -> AnnotationSet:
    """Gold := the named annotator's current spans (notes included); decision "picked <name>"."""
    _check_reviewer(reviewer)
    person = get_user(session, annotator)
    chosen = get_set(session, generation_id, person)
    if chosen is None:
        raise UserError(f"{person.name} has not labelled generation {generation_id}")
    return save_gold(
        session,
        generation_id,
        spans_of(chosen),
        expected_version=expected_version,
        reviewer=reviewer,
        decision=f"picked {person.name}",
        allow_removal=allow_removal,
    )
