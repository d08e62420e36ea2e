"""Team progress for the Users page: per annotator, items done, spans, pace, agreement with gold."""

from __future__ import annotations

import statistics
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.analysis.agreement import agreement_report
from db.agreement_items import agreement_items
from db.models import AnnotationSet, Event, SpanRow, User

MAX_GAP_SECONDS = 30 * 60  # a longer pause between two saves is a break, not time spent on an item


def _median_seconds_per_item(times: list) -> float | None:
    """Median gap between a person's consecutive saves, ignoring breaks longer than 30 minutes."""
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    gaps = [g for g in gaps if 0 < g <= MAX_GAP_SECONDS]
    return float(statistics.median(gaps)) if gaps else None


def team_progress(session: Session, dataset: str | None = None) -> list[dict[str, Any]]:
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
    gold_kappa: dict[str, float | None] = {}
    if dataset:
        items, annotators, _ids = agreement_items(session, dataset, include_gold=True)
        if "gold" in annotators:
            for name in annotators:
                if name == "gold":
                    continue
                pair = [it for it in items if it[1].get(name) is not None and it[1].get("gold") is not None]
                if pair:
                    report = agreement_report(
                        [(o, {"gold": s["gold"], name: s[name]}) for o, s in pair], ["gold", name]
                    )
                    gold_kappa[name] = report["pairs"][0]["cohen_kappa"] if report["pairs"] else None
    rows = []
    for user in users:
        times = list(
            session.scalars(
                select(Event.at).where(Event.user_id == user.id, Event.action == "annotation.save").order_by(Event.at)
            )
        )
        rows.append(
            {
                "name": user.name,
                "role": user.role,
                "active": user.active,
                "items_done": int(sets.get(user.id, 0)),
                "spans_labelled": int(spans.get(user.id, 0)),
                "median_seconds_per_item": _median_seconds_per_item(times),
                "kappa_vs_gold": gold_kappa.get(user.name),
            }
        )
    return rows


# Headings people read on the Users page (the keys stay stable for code and exports).
TEAM_COLUMNS = {
    "items_done": "answers labelled",
    "spans_labelled": "spans labelled",
    "median_seconds_per_item": "median seconds per answer",
    "kappa_vs_gold": "κ against gold",
}
