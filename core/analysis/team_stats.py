"""Team figures for the Users and Review pages: pace between saves, agreement with gold, word units.

Pure: storage (`db.team`) hands back save times and each annotator's spans; this module
turns them into the numbers people read.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from core.analysis.agreement import agreement_report

MAX_GAP_SECONDS = 30 * 60  # a longer pause between two saves is a break, not time spent on an item
GOLD = "gold"  # the name gold sets take among the annotators of an agreement item

#: One generation as the agreement statistics read it: (unit offsets, {annotator: spans or None}).
AgreementItem = tuple[list[tuple[int, int]], dict[str, Any]]


def word_offsets(text: str) -> list[tuple[int, int]]:
    """Whitespace-separated units, for answers stored without model tokens."""
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def median_seconds_per_item(times: Sequence[datetime]) -> float | None:
    """Median gap between a person's consecutive saves, ignoring breaks longer than 30 minutes."""
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    gaps = [g for g in gaps if 0 < g <= MAX_GAP_SECONDS]
    return float(statistics.median(gaps)) if gaps else None


def kappa_against_gold(items: Sequence[AgreementItem], annotators: Sequence[str]) -> dict[str, float | None]:
    """Per annotator, Cohen's κ against the gold sets on the generations both labelled (absent
    when they share none; None when κ is undefined). Empty without gold among `annotators`."""
    if GOLD not in annotators:
        return {}
    found: dict[str, float | None] = {}
    for name in annotators:
        if name == GOLD:
            continue
        pair = [it for it in items if it[1].get(name) is not None and it[1].get(GOLD) is not None]
        if pair:
            report = agreement_report([(o, {GOLD: s[GOLD], name: s[name]}) for o, s in pair], [GOLD, name])
            found[name] = report["pairs"][0]["cohen_kappa"] if report["pairs"] else None
    return found
