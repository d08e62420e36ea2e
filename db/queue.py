"""The annotator's work queue: which generation each person labels next, and in what order
(assignments and leases: `db.assignments`).

`queue` builds one person's to-do list in a handful of SQL statements whatever the
dataset size: one for the candidate rows (annotation counts aggregated in SQL, the probe
score blobs joined in only when the sort needs them), one for the scores of the page
otherwise, and one per 500 items for the spans when annotators' disagreement is needed.

Functions take a Session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import combinations
from typing import Any

import numpy as np
from sqlalchemy import Text, and_, case, cast, func, or_, select
from sqlalchemy.orm import Session

from core.base.errors import UserError
from core.base.types import Span
from db.annotations import owner_key
from db.assignments import DONE, chunks, clock, live, utc
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

LABEL_STATES = ("unlabelled", "second", "mine", "skipped", "gold", "any")
SORTS = ("assigned", "uncertainty", "risk", "disagreement", "newest")
SCORE_SORTS = ("uncertainty", "risk")
PREVIEW_CHARS = 120
MAX_SEARCH_CHARS = 200
SCORE_DTYPE = "<f4"  # the layout db.arrays.pack_floats writes; read with numpy, not via lists


# --- disagreement between annotators ----------------------------------------------------


def _coverage(spans: Iterable[Span]) -> dict[str, list[tuple[int, int]]]:
    """Per label, the characters the spans cover as sorted disjoint intervals."""
    by_label: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for span in spans:
        if span.end > span.start:
            by_label[span.label].append((span.start, span.end))
    merged: dict[str, list[tuple[int, int]]] = {}
    for label, intervals in by_label.items():
        out: list[list[int]] = []
        for start, end in sorted(intervals):
            if out and start <= out[-1][1]:
                out[-1][1] = max(out[-1][1], end)
            else:
                out.append([start, end])
        merged[label] = [(a, b) for a, b in out]
    return merged


def _overlap(first: list[tuple[int, int]], second: list[tuple[int, int]]) -> int:
    """Characters two sorted disjoint interval lists share (two-pointer sweep)."""
    i = j = shared = 0
    while i < len(first) and j < len(second):
        (a0, a1), (b0, b1) = first[i], second[j]
        shared += max(0, min(a1, b1) - max(a0, b0))
        if a1 <= b1:
            i += 1
        else:
            j += 1
    return shared


def span_f1(first: Iterable[Span], second: Iterable[Span]) -> float:
    """Character-level F1 of two span sets: a character counts as agreed if both give it the same label.

    Characters rather than exact spans, so "1903" vs "in 1903" is a partial, not a total,
    disagreement. Two empty sets agree completely (1.0).
    """
    a, b = _coverage(first), _coverage(second)
    total = sum(e - s for cover in (a, b) for intervals in cover.values() for s, e in intervals)
    if total == 0:
        return 1.0
    shared = sum(_overlap(intervals, b.get(label, [])) for label, intervals in a.items())
    return 2 * shared / total


def disagreement(span_sets: Sequence[Sequence[Span]]) -> float | None:
    """1 - mean pairwise character F1 over the annotators' sets; None with fewer than two sets.

    0 means everyone marked the same characters with the same labels, 1 that no pair
    shares a single labelled character.
    """
    if len(span_sets) < 2:
        return None
    pairs = [span_f1(a, b) for a, b in combinations(span_sets, 2)]
    return 1.0 - sum(pairs) / len(pairs)


def _annotator_spans(session: Session, generation_ids: Sequence[int]) -> dict[int, list[list[Span]]]:
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


# --- the queue --------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueItem:
    """One row of an annotator's queue.

    - my_version: the version of the viewer's own set (None: not labelled by them yet);
    - n_annotators: annotator sets by anyone (gold excluded); has_gold: a gold set exists;
    - max_score: highest cached probe score over the tokens (None without cached scores);
    - uncertainty: mean over tokens of |score - threshold| — *smaller* means the probe is
      less sure, which is why the "uncertainty" sort puts the smallest first;
    - disagreement: 1 - mean pairwise character F1 of the annotators' sets (None if < 2 sets);
    - skipped: the viewer skipped it (`db.skips`).
    """

    generation_id: int
    dataset: str
    split: str
    preview: str
    assigned: bool
    lease_expires_at: datetime | None
    my_version: int | None
    n_annotators: int
    has_gold: bool
    max_score: float | None
    uncertainty: float | None
    disagreement: float | None = None
    skipped: bool = False


def _check_queue_args(label_state: str | None, sort: str, threshold: Any, limit: Any) -> None:
    if label_state is not None and label_state not in LABEL_STATES:
        raise UserError(f"unknown label state '{label_state}' (expected one of: {', '.join(LABEL_STATES)})")
    if sort not in SORTS:
        raise UserError(f"unknown sort '{sort}' (expected one of: {', '.join(SORTS)})")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise UserError(f"threshold must be a number, not {threshold!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise UserError(f"limit must be a whole number >= 1, not {limit!r}")


def _probe_id(session: Session, probe_version: int | None) -> int | None:
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


def _pool_filter(label_state: str | None, summary, mine_assigned, skipped):
    """Which generations are candidates at all (see `queue`)."""
    if label_state is None:
        return and_(or_(mine_assigned, summary.c.generation_id.is_(None)), skipped.is_(None))
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


def search_term(search: Any) -> str | None:
    """The stripped search text (None when blank); UserError when it is not text or too long."""
    if search is None:
        return None
    if not isinstance(search, str):
        raise UserError("the search must be text")
    term = search.strip()
    if len(term) > MAX_SEARCH_CHARS:
        raise UserError(f"the search can hold at most {MAX_SEARCH_CHARS} characters")
    return term or None


def _search_filter(term: str):
    """A superset of the matches in SQL: the answer text, the conversation as stored JSON (with the
    term JSON-escaped as the driver wrote it), or the answer number ("12" or "#12").
    `_matches` then drops rows that matched only JSON keys or punctuation."""
    escaped = json.dumps(term)[1:-1]
    found = [
        Generation.completion.icontains(term, autoescape=True),
        cast(Generation.conversation, Text).icontains(escaped, autoescape=True),
    ]
    number = re.fullmatch(r"#?(\d{1,12})", term)
    if number:
        found.append(Generation.id == int(number.group(1)))
    return or_(*found)


def _matches(row: Any, term: str) -> bool:
    """The exact test: the term in the questions or the answer (case-insensitive), or the answer's number."""
    number = re.fullmatch(r"#?(\d{1,12})", term)
    if number and row.id == int(number.group(1)):
        return True
    turns = row.conversation if isinstance(row.conversation, list) else []
    texts = [t.get("content", "") for t in turns if isinstance(t, dict) and isinstance(t.get("content"), str)]
    needle = term.casefold()
    return any(needle in text.casefold() for text in [row.completion or "", *texts])


def _candidates(
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
    """One statement: the candidate rows with their set summary (and score blobs if sorting by them)."""
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
    if sort in ("assigned", "newest") and not search:
        query = query.limit(limit)
    rows = list(session.execute(query))
    if search:
        rows = [row for row in rows if _matches(row, search)]
    return rows


Stats = tuple[float | None, float | None]  # (max score, mean |score - threshold|)


def score_stats(blobs: Sequence[bytes | None], threshold: float) -> list[Stats]:
    """(max score, mean |score - threshold|) per cached score blob; NaN tokens are ignored.

    Vectorised over all blobs at once (one concatenation, three `reduceat`s): ranking 20,000
    generations must not cost 20,000 rounds of small numpy calls. None for a missing blob
    or one without a single finite score.
    """
    arrays = [np.frombuffer(blob, dtype=SCORE_DTYPE) if blob else np.empty(0, SCORE_DTYPE) for blob in blobs]
    stats: list[Stats] = [(None, None)] * len(arrays)
    lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
    filled = np.flatnonzero(lengths)
    if filled.size == 0:
        return stats
    flat = np.concatenate([arrays[i] for i in filled])  # float32 all the way: half the memory traffic
    starts = np.concatenate(([0], np.cumsum(lengths[filled])[:-1]))
    finite = np.isfinite(flat)
    if not finite.all():  # rare (unscored tokens): neutralise NaN for both reductions
        flat = np.where(finite, flat, np.float32(-np.inf))
    counts = np.add.reduceat(finite, starts, dtype=np.int64)
    distance = np.abs(flat - np.float32(threshold))
    distance[~finite] = 0.0
    distance = np.add.reduceat(distance, starts, dtype=np.float64)
    highest = np.maximum.reduceat(flat, starts)
    for i, count, total, top in zip(filled.tolist(), counts.tolist(), distance.tolist(), highest.tolist()):
        if count:
            stats[i] = (float(top), total / count)
    return stats


def _page_scores(session: Session, probe_id: int | None, generation_ids: list[int]) -> dict[int, bytes]:
    if probe_id is None:
        return {}
    blobs: dict[int, bytes] = {}
    for chunk in chunks(generation_ids):
        query = select(Prediction.generation_id, Prediction.scores).where(
            Prediction.probe_id == probe_id, Prediction.generation_id.in_(chunk)
        )
        blobs.update({generation_id: scores for generation_id, scores in session.execute(query)})
    return blobs


def _item(row: Any, stats: Stats, disagreed: float | None) -> QueueItem:
    return QueueItem(
        generation_id=row.id,
        dataset=row.name,
        split=row.split,
        preview=row.preview or "",
        assigned=row.assignment_id is not None,
        lease_expires_at=utc(row.lease_expires_at),
        my_version=row.my_version,
        n_annotators=int(row.n_annotators or 0),
        has_gold=bool(row.has_gold),
        max_score=stats[0],
        uncertainty=stats[1],
        disagreement=disagreed,
        skipped=row.skipped_at is not None,
    )


def _rank(sort: str, row: Any, stats: Stats, disagreed: float | None) -> tuple:
    """Sort key for the orders computed here: assigned first, missing values last, ids break ties."""
    first = 0 if row.assignment_id is not None else 1
    if sort == "uncertainty":
        return first, stats[1] is None, stats[1] or 0.0, row.id
    if sort == "risk":
        return first, stats[0] is None, -(stats[0] or 0.0), row.id
    return first, disagreed is None, -(disagreed or 0.0), -(row.n_annotators or 0), row.id


def _disagreements(session: Session, rows: list[Any]) -> dict[int, float | None]:
    contested = [row.id for row in rows if (row.n_annotators or 0) >= 2]
    return {g: disagreement(sets) for g, sets in _annotator_spans(session, contested).items()}


def queue(
    session: Session,
    user: User,
    *,
    dataset: str | None = None,
    split: str | None = None,
    label_state: str | None = None,
    sort: str = "assigned",
    probe_version: int | None = None,
    threshold: float = 0.5,
    limit: int = 200,
    search: str | None = None,
    now: datetime | None = None,
) -> list[QueueItem]:
    """The user's queue: their live assignments first, then the rest in the chosen order.

    Which generations appear (`label_state`):
    - None: those assigned to the user (live lease) plus those nobody has labelled yet,
      less those the user skipped;
    - "unlabelled": only those without any set (gold included); "second": those exactly one
      other annotator labelled (overlap for agreement; not skipped by the user); "mine": those
      the user has a set for; "skipped": those the user skipped; "gold": those with a gold
      set; "any": every generation.
    `search` keeps those whose question or answer contains the text (case-insensitive), or
    whose number it is ("12", "#12").
    Orders (`sort`), always after "assigned to me first":
    - "assigned": the lease ending soonest first, then by id (import order);
    - "uncertainty": mean |score - threshold| smallest first; "risk": max score highest
      first (scores of `probe_version`, else the active probe; items without cached scores last);
    - "disagreement": 1 - mean pairwise character F1 of the annotators' sets, highest
      first (items with fewer than two sets last; see `disagreement`);
    - "newest": most recently added first.
    It only reads (a page run calls it): a lease that ran out already counts as no lease
    (`live`); `assign` sweeps expired leases when it writes.
    """
    _check_queue_args(label_state, sort, threshold, limit)
    term = search_term(search)
    moment = clock(now)
    dataset_id = get_dataset(session, dataset).id if dataset is not None else None
    probe_id = _probe_id(session, probe_version)
    rows = _candidates(
        session,
        user,
        dataset_id=dataset_id,
        split=split.strip() if split else split,
        label_state=label_state,
        sort=sort,
        probe_id=probe_id,
        limit=limit,
        moment=moment,
        search=term,
    )
    if sort in ("assigned", "newest"):  # already ordered by the database (and cut to `limit` unless searching)
        rows = rows[:limit]
        blobs = _page_scores(session, probe_id, [row.id for row in rows])
        stats = score_stats([blobs.get(row.id) for row in rows], threshold)
        found = _disagreements(session, rows)
        return [_item(row, stat, found.get(row.id)) for row, stat in zip(rows, stats)]
    return _sorted_page(session, rows, sort=sort, probe_id=probe_id, threshold=threshold, limit=limit)


def _sorted_page(
    session: Session, rows: list[Any], *, sort: str, probe_id: int | None, threshold: float, limit: int
) -> list[QueueItem]:
    """Rank every candidate on the one measure the sort needs; fill in the rest for the page only."""
    by_score = sort in SCORE_SORTS
    blobs = [row.scores for row in rows] if by_score and probe_id is not None else [None] * len(rows)
    stats = score_stats(blobs, threshold) if by_score else [(None, None)] * len(rows)
    found = _disagreements(session, rows) if sort == "disagreement" else {}
    order = sorted(range(len(rows)), key=lambda i: _rank(sort, rows[i], stats[i], found.get(rows[i].id)))
    page = [rows[i] for i in order[:limit]]
    if by_score:
        page_stats = [stats[i] for i in order[:limit]]
        found = _disagreements(session, page)
    else:
        page_blobs = _page_scores(session, probe_id, [row.id for row in page])
        page_stats = score_stats([page_blobs.get(row.id) for row in page], threshold)
    return [_item(row, stat, found.get(row.id)) for row, stat in zip(page, page_stats)]


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
