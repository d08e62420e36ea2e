"""Which answer the Review page offers, and which one comes after a gold save.

A reviewer works down the answers ordered by disagreement. Once an answer is settled (it
has a gold set) it leaves the top of the list, and saving gold moves on to the next
unsettled answer instead of leaving the reviewer on the one just done.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol


class ReviewItem(Protocol):
    """What these rules read of a queue row (core.analysis.queue_order.QueueItem has it)."""

    generation_id: int
    n_annotators: int
    has_gold: bool


def review_candidates(items: Sequence[ReviewItem]) -> list[int]:
    """Answer ids to offer: those somebody labelled (every answer if nobody labelled any),
    unsettled first, then settled; each part keeps the queue's order (disagreement)."""
    labelled = [i for i in items if i.n_annotators > 0] or list(items)
    return [i.generation_id for i in labelled if not i.has_gold] + [i.generation_id for i in labelled if i.has_gold]


def next_unsettled(order: Sequence[int], settled: Collection[int], current: int) -> int | None:
    """The first unsettled answer after `current` in `order` (wrapping round to the top), so a
    reviewer keeps going down the list; None when every other answer is settled."""
    start = order.index(current) + 1 if current in order else 0
    for generation_id in [*order[start:], *order[:start]]:
        if generation_id != current and generation_id not in settled:
            return generation_id
    return None
