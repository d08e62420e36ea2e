"""The annotator's work queue: which generation each person labels next, in what order, and why.

Storage (`db.queue`) hands back candidate rows, score blobs and annotators' spans; the rules
(`core.analysis.queue_order`, `core.analysis.queue_reasons`) rank and explain them. This
module puts the two together for the Annotate and Review pages and the tests.

Functions take a Session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core.analysis.queue_order import (
    MAX_SEARCH_CHARS,
    SCORE_SORTS,
    SQL_SORTS,
    QueueItem,
    Stats,
    check_queue_args,
    disagreement,
    matches,
    rank,
    score_stats,
    search_term,
)
from core.analysis.queue_reasons import QueueCounts, reason, summary_line
from db.assignments import clock, utc
from db.generations import get_dataset
from db.models import User
from db.queue import annotator_spans, candidates, page_scores, probe_id_for, progress, queue_counts

__all__ = ["MAX_SEARCH_CHARS", "QueueCounts", "QueueItem", "counts", "progress", "queue", "reason", "summary_line"]


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
        needed=int(row.needed or 1),
    )


def _disagreements(session: Session, rows: list[Any]) -> dict[int, float | None]:
    contested = [row.id for row in rows if (row.n_annotators or 0) >= 2]
    return {g: disagreement(sets) for g, sets in annotator_spans(session, contested).items()}


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
    check_queue_args(label_state, sort, threshold, limit)
    term = search_term(search)
    moment = clock(now)
    dataset_id = get_dataset(session, dataset).id if dataset is not None else None
    probe_id = probe_id_for(session, probe_version)
    rows = candidates(
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
    if term:
        rows = [row for row in rows if matches(row, term)]
    if sort in SQL_SORTS:  # already ordered by the database (and cut to `limit` unless searching)
        rows = rows[:limit]
        blobs = page_scores(session, probe_id, [row.id for row in rows])
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
    order = sorted(range(len(rows)), key=lambda i: rank(sort, rows[i], stats[i], found.get(rows[i].id)))
    page = [rows[i] for i in order[:limit]]
    if by_score:
        page_stats = [stats[i] for i in order[:limit]]
        found = _disagreements(session, page)
    else:
        page_blobs = page_scores(session, probe_id, [row.id for row in page])
        page_stats = score_stats([page_blobs.get(row.id) for row in page], threshold)
    return [_item(row, stat, found.get(row.id)) for row, stat in zip(page, page_stats)]


def counts(
    session: Session, user: User, *, dataset: str | None = None, split: str | None = None, now: datetime | None = None
) -> QueueCounts:
    """Answers in scope by where they stand for `user` (each counted once; see `QueueCounts`)."""
    return QueueCounts(**queue_counts(session, user, dataset=dataset, split=split, now=now))
