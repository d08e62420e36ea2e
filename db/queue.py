"""The annotator's work queue as queries: candidate rows, their cached scores and annotators' spans,
counts per bucket and progress (the rules that order and explain them: `core.analysis.queue_order`
and `queue_reasons`; put together by `core.orchestration.work_queue`).

The candidates come in a handful of SQL statements whatever the dataset size: one for the
candidate rows (annotation counts aggregated in SQL, the probe score blobs joined in only
when the sort needs them), one for the scores of the page otherwise, and one per 500 items
for the spans when annotators' disagreement is needed.

Functions take a Session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Text, and_, case, cast, func, or_, select
from sqlalchemy.orm import Session

from core.analysis.queue_order import DEMO_DATASET, SCORE_SORTS, SQL_SORTS
from core.base.types import Span
from db.annotations import owner_key
from db.assignments import DONE, chunks, clock, live
from db.generations import get_dataset
from db.models import (
    GOLD_OWNER,
    AnnotationSet,
    Assignment,
    Dataset,
    Generation,
    Prediction,
    Skip,
    SpanRow,
    User,
)
from db.probes import active_probe, get_probe

PREVIEW_CHARS = 120


def probe_id_for(session: Session, probe_version: int | None) -> int | None:
    """The named probe version (UserError if unknown), else the active one, else none."""
    if probe_version is not None:
        return get_probe(session, probe_version).id
    probe = active_probe(session)
    return probe.id if probe is not None else None


def set_summary(user: User):
    """One row per generation that has any set: annotator count, gold flag, my version."""
    owner = AnnotationSet.owner
    return (
        select(
            AnnotationSet.generation_id.label("generation_id"),
            func.sum(case((owner != GOLD_OWNER, 1), else_=0)).label("n_annotators"),
            func.max(case((owner == GOLD_OWNER, 1), else_=0)).label("has_gold"),
            func.max(case((owner == owner_key(user), AnnotationSet.version))).label("my_version"),
        )
        .group_by(AnnotationSet.generation_id)
        .subquery("set_summary")
    )


def _practice(summary):
    """A demo answer with gold and no annotator: in everyone's queue to practise on."""
    return and_(Dataset.name == DEMO_DATASET, func.coalesce(summary.c.n_annotators, 0) == 0, summary.c.has_gold == 1)


def needed_annotators():
    """How many annotators an answer's dataset asks for (its overlap): `overlap_k` for the
    `overlap_percent`% of its answers picked by a fixed spread of their ids, else 1."""
    picked = (Generation.id * 37) % 100 < func.coalesce(Dataset.overlap_percent, 100)
    return case((picked, func.coalesce(Dataset.overlap_k, 1)), else_=1)


def _overlap(summary):
    """Labelled by fewer annotators than the dataset's overlap asks, not by me, not settled by gold."""
    n_sets = func.coalesce(summary.c.n_annotators, 0)
    return and_(n_sets >= 1, n_sets < needed_annotators(), summary.c.my_version.is_(None), summary.c.has_gold == 0)


def _pool_filter(label_state: str | None, summary, mine_assigned, skipped):
    """Which generations are candidates at all (see `queue`)."""
    if label_state is None:  # + the demo's answers nobody labelled, to practise on (gold pre-filled)
        return and_(
            or_(mine_assigned, summary.c.generation_id.is_(None), _practice(summary), _overlap(summary)),
            skipped.is_(None),
        )
    if label_state == "unlabelled":
        return summary.c.generation_id.is_(None)
    if label_state == "second":
        return and_(summary.c.n_annotators == 1, summary.c.my_version.is_(None), skipped.is_(None))
    if label_state == "mine":
        return summary.c.my_version.is_not(None)
    if label_state == "skipped":
        return skipped.is_not(None)
    if label_state == "gold":
        return summary.c.has_gold == 1
    return None  # "any"


def _sql_order(sort: str, mine_assigned):
    """ORDER BY for the sorts the database can do alone; assigned items always come first."""
    first = case((mine_assigned, 0), else_=1)
    if sort == "assigned":
        soonest = case((Assignment.lease_expires_at.is_(None), 1), else_=0)
        return [first, soonest, Assignment.lease_expires_at, Generation.id]
    if sort == "newest":
        return [first, Generation.created_at.desc(), Generation.id.desc()]
    return [first, Generation.id]


def _search_filter(term: str):
    """A superset of the matches in SQL: the answer text, the conversation as stored JSON (with the
    term JSON-escaped as the driver wrote it), or the answer number ("12" or "#12").
    `core.analysis.queue_order.matches` then drops rows that matched only JSON keys or punctuation."""
    escaped = json.dumps(term)[1:-1]
    found = [
        Generation.completion.icontains(term, autoescape=True),
        cast(Generation.conversation, Text).icontains(escaped, autoescape=True),
    ]
    number = re.fullmatch(r"#?(\d{1,12})", term)
    if number:
        found.append(Generation.id == int(number.group(1)))
    return or_(*found)


def candidates(
    session: Session,
    user: User,
    *,
    dataset_id: int | None,
    split: str | None,
    label_state: str | None,
    sort: str,
    probe_id: int | None,
    limit: int,
    moment: datetime,
    search: str | None = None,
) -> list[Any]:
    """One statement: the candidate rows with their set summary (and score blobs if sorting by them).

    With a search the rows are a superset of the matches (`_search_filter`), uncut: the caller
    keeps the exact matches (`core.analysis.queue_order.matches`) and cuts to `limit`."""
    summary = set_summary(user)
    mine_assigned = Assignment.id.is_not(None)
    columns = [
        Generation.id,
        Dataset.name,
        Generation.split,
        func.substr(Generation.completion, 1, PREVIEW_CHARS).label("preview"),
        Assignment.id.label("assignment_id"),
        Assignment.lease_expires_at,
        summary.c.n_annotators,
        summary.c.has_gold,
        summary.c.my_version,
        Skip.skipped_at,
        needed_annotators().label("needed"),
    ]
    if search:
        columns += [Generation.completion, Generation.conversation]
    with_scores = sort in SCORE_SORTS and probe_id is not None
    if with_scores:
        columns.append(Prediction.scores)
    query = (
        select(*columns)
        .join(Dataset, Dataset.id == Generation.dataset_id)
        .outerjoin(
            Assignment,
            and_(Assignment.generation_id == Generation.id, Assignment.user_id == user.id, live(moment)),
        )
        .outerjoin(summary, summary.c.generation_id == Generation.id)
        .outerjoin(Skip, and_(Skip.generation_id == Generation.id, Skip.user_id == user.id))
    )
    if with_scores:
        query = query.outerjoin(
            Prediction, and_(Prediction.generation_id == Generation.id, Prediction.probe_id == probe_id)
        )
    for condition in (
        Generation.dataset_id == dataset_id if dataset_id is not None else None,
        Generation.split == split if split is not None else None,
        _pool_filter(label_state, summary, mine_assigned, Skip.id),
        _search_filter(search) if search else None,
    ):
        if condition is not None:
            query = query.where(condition)
    query = query.order_by(*_sql_order(sort, mine_assigned))
    if sort in SQL_SORTS and not search:
        query = query.limit(limit)
    return list(session.execute(query))


def page_scores(session: Session, probe_id: int | None, generation_ids: list[int]) -> dict[int, bytes]:
    """The cached score blobs of these generations under `probe_id` (none without a probe)."""
    if probe_id is None:
        return {}
    blobs: dict[int, bytes] = {}
    for chunk in chunks(generation_ids):
        query = select(Prediction.generation_id, Prediction.scores).where(
            Prediction.probe_id == probe_id, Prediction.generation_id.in_(chunk)
        )
        blobs.update({generation_id: scores for generation_id, scores in session.execute(query)})
    return blobs


def annotator_spans(session: Session, generation_ids: Sequence[int]) -> dict[int, list[list[Span]]]:
    """Per generation, each non-gold set's spans (an empty set is still a set: it said "nothing")."""
    found: dict[int, dict[int, list[Span]]] = defaultdict(dict)
    for chunk in chunks(list(generation_ids)):
        query = (
            select(AnnotationSet.generation_id, AnnotationSet.id, SpanRow.start, SpanRow.end, SpanRow.label)
            .outerjoin(SpanRow, SpanRow.set_id == AnnotationSet.id)
            .where(AnnotationSet.generation_id.in_(chunk), AnnotationSet.owner != GOLD_OWNER)
        )
        for generation_id, set_id, start, end, label in session.execute(query):
            spans = found[generation_id].setdefault(set_id, [])
            if start is not None:
                spans.append(Span(start, end, label))
    return {g: list(sets.values()) for g, sets in found.items()}


def queue_counts(
    session: Session, user: User, *, dataset: str | None = None, split: str | None = None, now: datetime | None = None
) -> dict[str, int]:
    """Answers in scope per bucket of `core.analysis.queue_reasons.QueueCounts`, in one aggregate
    statement. Read-only: leases are judged against `now` without sweeping them."""
    summary = set_summary(user)
    moment = clock(now)
    n_sets = func.coalesce(summary.c.n_annotators, 0)
    bucket = case(
        (Skip.id.is_not(None), "skipped"),
        (summary.c.my_version.is_not(None), "mine"),
        (Assignment.id.is_not(None), "assigned"),
        (summary.c.generation_id.is_(None), "unlabelled"),
        (_overlap(summary), "overlap"),
        (n_sets == 1, "needs_second"),
        (n_sets >= 2, "others"),
        (Dataset.name == DEMO_DATASET, "practice"),
        else_="gold_only",
    ).label("bucket")
    query = (
        select(bucket, func.count(Generation.id))
        .select_from(Generation)
        .join(Dataset, Dataset.id == Generation.dataset_id)
        .outerjoin(summary, summary.c.generation_id == Generation.id)
        .outerjoin(
            Assignment, and_(Assignment.generation_id == Generation.id, Assignment.user_id == user.id, live(moment))
        )
        .outerjoin(Skip, and_(Skip.generation_id == Generation.id, Skip.user_id == user.id))
        .group_by(bucket)
    )
    if dataset is not None:
        query = query.where(Generation.dataset_id == get_dataset(session, dataset).id)
    if split:
        query = query.where(Generation.split == split.strip())
    return {name: int(n) for name, n in session.execute(query)}


# --- progress ---------------------------------------------------------------------------


def progress(
    session: Session, user: User, dataset: str | None = None, *, now: datetime | None = None
) -> dict[str, int]:
    """Numbers for a progress bar, within `dataset` (or every dataset).

    - done: generations whose assignment the user finished or for which they have a set
      (each generation once, however both are true);
    - assigned: the user's live plus done assignments (expired ones were handed back);
    - total: generations in scope.
    Read-only: leases are judged against `now` without sweeping them.
    """
    moment = clock(now)
    scope = select(Generation.id)
    if dataset is not None:
        scope = scope.where(Generation.dataset_id == get_dataset(session, dataset).id)
    scope_ids = scope.scalar_subquery()
    mine = Assignment.user_id == user.id
    assigned = session.scalar(
        select(func.count(Assignment.id)).where(
            mine, Assignment.generation_id.in_(scope_ids), or_(live(moment), Assignment.status == DONE)
        )
    )
    finished = (
        select(Assignment.generation_id)
        .where(mine, Assignment.status == DONE)
        .union(select(AnnotationSet.generation_id).where(AnnotationSet.owner == owner_key(user)))
        .subquery()
    )
    done = session.scalar(select(func.count()).select_from(finished).where(finished.c.generation_id.in_(scope_ids)))
    total = session.scalar(select(func.count()).select_from(scope.subquery()))
    return {"done": int(done or 0), "assigned": int(assigned or 0), "total": int(total or 0)}
