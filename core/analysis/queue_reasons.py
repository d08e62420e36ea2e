"""Why an answer is, or is not, in a person's queue, in sentences people read.

"My queue" (the default) is: answers assigned to me, then answers nobody has labelled yet,
less those I skipped. A second annotator used to find it empty with no explanation, because
answers someone else labelled (or that have a gold set) are not in it. These counts and
reasons say so, and point at the "needs a second annotator" mode (label state "second"),
which is how overlap for agreement is gathered without a reviewer assigning it.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.analysis.queue_order import DEMO_DATASET, QueueItem
from core.text.readable import plural


@dataclass(frozen=True)
class QueueCounts:
    """Answers in scope by where they stand for one person (each answer counted once, in the
    first bucket that applies, in this order)."""

    skipped: int = 0  # I skipped it
    assigned: int = 0  # a live assignment of mine, not labelled by me yet
    mine: int = 0  # I labelled it
    unlabelled: int = 0  # nobody has labelled it and it has no gold
    needs_second: int = 0  # exactly one other annotator labelled it
    others: int = 0  # two or more others labelled it
    overlap: int = 0  # others labelled it, fewer than its dataset's overlap asks (in my queue)
    practice: int = 0  # a demo answer: gold by the demo's rule and no annotator (in my queue)
    gold_only: int = 0  # a gold set (reviewer, import) and no annotator

    @property
    def in_my_queue(self) -> int:
        return self.assigned + self.unlabelled + self.overlap + self.practice


def summary_line(found: QueueCounts) -> str:
    """What "my queue" holds and what it leaves out, in one paragraph (plain text: escape it to render)."""
    inside = (
        f"Your queue: {plural(found.assigned, 'answer')} assigned to you and "
        f"{plural(found.unlabelled, 'answer')} nobody has labelled yet"
        + (
            f", {plural(found.overlap, 'answer')} its dataset's overlap asks more annotators for"
            if found.overlap
            else ""
        )
        + (
            f", and {plural(found.practice, 'demo answer')} to practise on (its gold pre-filled)."
            if found.practice
            else "."
        )
    )
    left = [
        part
        for n, part in (
            (
                found.needs_second,
                f"{plural(found.needs_second, 'answer')} one other annotator labelled (they need "
                "a second annotator for agreement: show 'needs a second annotator')",
            ),
            (found.others, f"{plural(found.others, 'answer')} two or more others labelled"),
            (found.gold_only, f"{plural(found.gold_only, 'answer')} with a gold set and no annotator"),
            (found.mine, f"{plural(found.mine, 'answer')} you labelled"),
            (found.skipped, f"{plural(found.skipped, 'answer')} you skipped"),
        )
        if n
    ]
    return inside + (" Not in it: " + "; ".join(left) + "." if left else "")


def reason(item: QueueItem) -> str:
    """Why this row is (or is not) in the viewer's default queue: one short phrase."""
    if item.skipped:
        return "you skipped it"
    if item.my_version is not None:
        return f"you labelled it (v{item.my_version})"
    if item.assigned:
        return "assigned to you"
    if item.n_annotators == 0 and item.has_gold and item.dataset == DEMO_DATASET:
        return "demo answer: practise on it (gold pre-filled)"
    if item.n_annotators == 0:
        return "has gold, no annotator" if item.has_gold else "nobody labelled it yet"
    if not item.has_gold and item.n_annotators < item.needed:
        # the dataset's overlap (Data -> Datasets -> Overlap) asks for more: name its k
        return f"{item.n_annotators} of {item.needed} annotators labelled it (overlap {item.needed} on this dataset)"
    if item.n_annotators == 1:
        return "1 other labelled it: needs a second"
    return f"{item.n_annotators} others labelled it"
