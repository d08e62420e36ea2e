"""Gather what the agreement statistics need for a dataset: token offsets and each annotator's spans."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.annotations import spans_of
from db.generations import get_dataset, trace_of
from db.models import GOLD_OWNER, AnnotationSet, Generation, User


def _word_offsets(text: str) -> list[tuple[int, int]]:
    """Whitespace-separated units, for answers stored without model tokens."""
    import re

    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def agreement_items(session: Session, dataset: str, *, include_gold: bool = False):
    """([(offsets, {annotator: spans})], annotators, generation_ids) for every generation with a set."""
    ds = get_dataset(session, dataset)
    rows = session.execute(
        select(Generation, AnnotationSet, User.name)
        .join(AnnotationSet, AnnotationSet.generation_id == Generation.id)
        .outerjoin(User, User.id == AnnotationSet.annotator_id)
        .where(Generation.dataset_id == ds.id)
        .order_by(Generation.id)
    ).all()
    by_generation: dict[int, tuple[Generation, dict[str, list]]] = {}
    for generation, annotation_set, name in rows:
        if annotation_set.owner == GOLD_OWNER:
            if not include_gold:
                continue
            name = "gold"
        entry = by_generation.setdefault(generation.id, (generation, {}))
        entry[1][name or annotation_set.owner] = spans_of(annotation_set)
    annotators = sorted({name for _g, sets in by_generation.values() for name in sets})
    items, ids = [], []
    for generation_id, (generation, sets) in by_generation.items():
        trace = trace_of(generation)
        offsets = list(trace.offsets) if trace is not None else _word_offsets(generation.completion)
        items.append((offsets, {a: sets.get(a) for a in annotators}))
        ids.append(generation_id)
    return items, annotators, ids
