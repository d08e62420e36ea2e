"""The annotator's queue as rules: what a row says, which rows a search keeps, how rows are ranked.

Pure: the rows come from storage (`db.queue`), and `core.orchestration.work_queue` puts the
two together. Disagreement between annotators is measured in characters, so "1903" against
"in 1903" is a partial, not a total, disagreement.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import combinations
from typing import Any

import numpy as np

from core.base.errors import UserError
from core.base.types import Span

LABEL_STATES = ("unlabelled", "second", "mine", "skipped", "gold", "any")
SORTS = ("assigned", "uncertainty", "risk", "disagreement", "newest")
SCORE_SORTS = ("uncertainty", "risk")
#: Sorts the database does alone (the others rank every candidate here).
SQL_SORTS = ("assigned", "newest")
MAX_SEARCH_CHARS = 200
#: The demo seed's dataset: its answers (gold by the demo's rule, no annotator) are in everyone's
#: queue to practise on, their gold pre-filled as editable pre-annotations.
DEMO_DATASET = "demo"
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


# --- the queue ---------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueItem:
    """One row of an annotator's queue.

    - my_version: the version of the viewer's own set (None: not labelled by them yet);
    - n_annotators: annotator sets by anyone (gold excluded); has_gold: a gold set exists;
    - max_score: highest cached probe score over the tokens (None without cached scores);
    - uncertainty: mean over tokens of |score - threshold| — *smaller* means the probe is
      less sure, which is why the "uncertainty" sort puts the smallest first;
    - disagreement: 1 - mean pairwise character F1 of the annotators' sets (None if < 2 sets);
    - skipped: the viewer skipped it (`db.skips`);
    - needed: how many annotators its dataset's overlap asks for this answer (1 = no overlap).
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
    needed: int = 1


def check_queue_args(label_state: str | None, sort: str, threshold: Any, limit: Any) -> None:
    """One clear UserError for a bad choice, before any query runs."""
    if label_state is not None and label_state not in LABEL_STATES:
        raise UserError(f"unknown label state '{label_state}' (expected one of: {', '.join(LABEL_STATES)})")
    if sort not in SORTS:
        raise UserError(f"unknown sort '{sort}' (expected one of: {', '.join(SORTS)})")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise UserError(f"threshold must be a number, not {threshold!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise UserError(f"limit must be a whole number >= 1, not {limit!r}")


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


def matches(row: Any, term: str) -> bool:
    """The exact test: the term in the questions or the answer (case-insensitive), or the answer's number."""
    number = re.fullmatch(r"#?(\d{1,12})", term)
    if number and row.id == int(number.group(1)):
        return True
    turns = row.conversation if isinstance(row.conversation, list) else []
    texts = [t.get("content", "") for t in turns if isinstance(t, dict) and isinstance(t.get("content"), str)]
    needle = term.casefold()
    return any(needle in text.casefold() for text in [row.completion or "", *texts])


Stats = tuple[float | None, float | None]  # (max score, mean |score - threshold|)


# --- ranking -----------------------------------------------------------------------------


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


def rank(sort: str, row: Any, stats: Stats, disagreed: float | None) -> tuple:
    """Sort key for the orders computed here: assigned first, missing values last, ids break ties."""
    first = 0 if row.assignment_id is not None else 1
    if sort == "uncertainty":
        return first, stats[1] is None, stats[1] or 0.0, row.id
    if sort == "risk":
        return first, stats[0] is None, -(stats[0] or 0.0), row.id
    return first, disagreed is None, -(disagreed or 0.0), -(row.n_annotators or 0), row.id
