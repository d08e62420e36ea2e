"""Which spans count as the truth for training and evaluation.

Rule (documented in the README): the gold set when a reviewer (or the demo seed) wrote
one; otherwise the strict majority of the people who labelled the answer
(`core.text.editing.majority_gold`); otherwise, only when the `judge` source is chosen, the
LLM judges' sets (a model's account, `users.bot`: one judge's set, or the majority of several);
answers nobody labelled are left out. One annotator is a majority of one, so a single person's
labels count until a reviewer settles them. A judge's set never counts as a person's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from core.base.types import Generation as CoreGeneration
from core.base.types import Span, TokenTrace
from core.text.editing import majority_gold
from db.annotations import GOLD_OWNER
from db.generations import to_core, trace_of
from db.models import AnnotationSet, Dataset, Generation, User

#: every source a retrain may learn from, in the order they win
LABEL_SOURCES = ("gold", "majority", "judge")
#: what counts unless the team says otherwise: judges' labels are left out
DEFAULT_LABEL_SOURCES = ("gold", "majority")


@dataclass
class LabelledGeneration:
    """A stored answer with the spans the label rule chose, ready for core.probes.pipeline."""

    row_id: int
    dataset: str
    split: str
    source: str  # "gold", "majority" or "judge"
    generation: CoreGeneration
    trace: TokenTrace | None


def stable_key(row: Generation) -> str:
    """The generation id core sees: the imported id when there is one, else the row id."""
    return row.external_id or f"row-{row.id}"


def labelled_generations(
    session: Session,
    *,
    datasets: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    sources: Sequence[str] = DEFAULT_LABEL_SOURCES,
) -> list[LabelledGeneration]:
    """Every answer that has labels under the rule, oldest first (a stable order)."""
    query = (
        select(Generation)
        .join(Dataset)
        .options(selectinload(Generation.dataset), selectinload(Generation.model))
        .order_by(Generation.id)
    )
    if datasets:
        query = query.where(Dataset.name.in_(list(datasets)))
    if splits:
        query = query.where(Generation.split.in_(list(splits)))
    rows = list(session.scalars(query))
    if not rows:
        return []
    sets_by_generation: dict[int, list[AnnotationSet]] = defaultdict(list)
    ids = [row.id for row in rows]
    for chunk_start in range(0, len(ids), 500):
        chunk = ids[chunk_start : chunk_start + 500]
        set_query = (
            select(AnnotationSet)
            .where(AnnotationSet.generation_id.in_(chunk))
            .options(selectinload(AnnotationSet.spans))
        )
        for annotation_set in session.scalars(set_query):
            sets_by_generation[annotation_set.generation_id].append(annotation_set)
    bots = set(session.scalars(select(User.id).where(User.bot.is_(True))))
    out: list[LabelledGeneration] = []
    for row in rows:
        sets = sets_by_generation.get(row.id, [])
        spans, source = _truth(sets, sources, bots)
        if source is None:
            continue
        generation = to_core(row)
        generation.id = stable_key(row)
        generation.spans = spans
        trace = trace_of(row)
        if trace is not None:
            # Hidden states must line up with the stored tokens (and their stored scores):
            # teacher-force exactly those ids instead of re-tokenising the text.
            generation.extra["tokens"] = {"ids": list(trace.token_ids)}
        out.append(LabelledGeneration(row.id, row.dataset.name, row.split, source, generation, trace))
    return out


def _spans(annotation_set: AnnotationSet) -> list[Span]:
    return [Span(s.start, s.end, s.label, s.note) for s in annotation_set.spans]


def _truth(sets: list[AnnotationSet], sources: Sequence[str], bots: set[int]) -> tuple[list[Span], str | None]:
    gold = next((s for s in sets if s.owner == GOLD_OWNER), None)
    if gold is not None and "gold" in sources:
        return _spans(gold), "gold"
    others = [s for s in sets if s.owner != GOLD_OWNER]
    people = {s.owner: _spans(s) for s in others if s.annotator_id not in bots}
    if people and "majority" in sources:
        return majority_gold(people), "majority"
    judges = {s.owner: _spans(s) for s in others if s.annotator_id in bots}
    if judges and "judge" in sources:
        return majority_gold(judges), "judge"
    return [], None


def labels_revision(session: Session) -> str:
    """Changes whenever any label set (or the set of answers) changes: a cache key for what is computed from labels."""
    sets = session.execute(
        select(func.count(AnnotationSet.id), func.max(AnnotationSet.id), func.max(AnnotationSet.updated_at))
    ).one()
    gens = session.execute(select(func.count(Generation.id), func.max(Generation.id))).one()
    return f"{sets[0]}:{sets[1]}:{sets[2]}:{gens[0]}:{gens[1]}"
