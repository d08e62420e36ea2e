"""Team queries: who labelled how much, when each save happened, and every set's spans per answer
(the figures made of them: `core.analysis.team_stats`, put together by `core.orchestration.team`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.analysis.team_stats import GOLD
from core.base.types import Span, TokenTrace
from db.annotations import spans_of
from db.generations import get_dataset, trace_of
from db.models import GOLD_OWNER, AnnotationSet, Event, Generation, SpanRow, User


@dataclass
class Activity:
    """One account's labelling so far; `save_times` in order."""

    name: str
    role: str
    active: bool
    items_done: int
    spans_labelled: int
    save_times: list[datetime] = field(default_factory=list)


def team_activity(session: Session) -> list[Activity]:
    """Every account by name, with its set and span counts and the times of its saves."""
    users = list(session.scalars(select(User).order_by(User.name)))
    sets = dict(
        session.execute(
            select(AnnotationSet.annotator_id, func.count(AnnotationSet.id))
            .where(AnnotationSet.annotator_id.is_not(None))
            .group_by(AnnotationSet.annotator_id)
        ).all()
    )
    spans = dict(
        session.execute(
            select(AnnotationSet.annotator_id, func.count(SpanRow.id))
            .join(SpanRow, SpanRow.set_id == AnnotationSet.id)
            .where(AnnotationSet.annotator_id.is_not(None))
            .group_by(AnnotationSet.annotator_id)
        ).all()
    )
    found = []
    for user in users:
        times = list(
            session.scalars(
                select(Event.at).where(Event.user_id == user.id, Event.action == "annotation.save").order_by(Event.at)
            )
        )
        found.append(
            Activity(
                user.name,
                "model" if user.bot else user.role,
                user.active,
                int(sets.get(user.id, 0)),
                int(spans.get(user.id, 0)),
                times,
            )
        )
    return found


@dataclass
class LabelledAnswer:
    """An answer with at least one set: its text, its stored tokens (if any) and each set's spans
    by annotator name (gold sets under `GOLD`)."""

    generation_id: int
    completion: str
    trace: TokenTrace | None
    sets: dict[str, list[Span]]


def labelled_answers(session: Session, dataset: str, *, include_gold: bool = False) -> list[LabelledAnswer]:
    """Every answer of `dataset` that has a set (gold ones only with `include_gold`), by id."""
    ds = get_dataset(session, dataset)
    rows = session.execute(
        select(Generation, AnnotationSet, User.name)
        .join(AnnotationSet, AnnotationSet.generation_id == Generation.id)
        .outerjoin(User, User.id == AnnotationSet.annotator_id)
        .where(Generation.dataset_id == ds.id)
        .order_by(Generation.id)
    ).all()
    by_generation: dict[int, tuple[Generation, dict[str, list[Span]]]] = {}
    for generation, annotation_set, name in rows:
        if annotation_set.owner == GOLD_OWNER:
            if not include_gold:
                continue
            name = GOLD
        entry = by_generation.setdefault(generation.id, (generation, {}))
        entry[1][name or annotation_set.owner] = spans_of(annotation_set)
    return [
        LabelledAnswer(generation_id, generation.completion, trace_of(generation), sets)
        for generation_id, (generation, sets) in by_generation.items()
    ]
