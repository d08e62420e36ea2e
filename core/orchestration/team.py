"""Team progress and agreement material: the Users page's table and the Review page's statistics,
made from what storage (`db.team`) returns and the rules of `core.analysis.team_stats`."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.analysis.team_stats import AgreementItem, kappa_against_gold, median_seconds_per_item, word_offsets
from db.team import labelled_answers, team_activity

# Headings people read on the Users page (the keys stay stable for code and exports).
TEAM_COLUMNS = {
    "items_done": "answers labelled",
    "spans_labelled": "spans labelled",
    "median_seconds_per_item": "median seconds per answer",
    "kappa_vs_gold": "κ against gold",
}


def agreement_items(
    session: Session, dataset: str, *, include_gold: bool = False
) -> tuple[list[AgreementItem], list[str], list[int]]:
    """([(offsets, {annotator: spans})], annotators, generation_ids) for every generation with a set.

    Offsets are the stored model tokens, else whitespace-separated words; an annotator who did
    not label a generation has None there."""
    answers = labelled_answers(session, dataset, include_gold=include_gold)
    annotators = sorted({name for answer in answers for name in answer.sets})
    items: list[AgreementItem] = []
    for answer in answers:
        offsets = list(answer.trace.offsets) if answer.trace is not None else word_offsets(answer.completion)
        items.append((offsets, {a: answer.sets.get(a) for a in annotators}))
    return items, annotators, [answer.generation_id for answer in answers]


def team_progress(session: Session, dataset: str | None = None) -> list[dict[str, Any]]:
    """Per account: answers and spans labelled, median seconds per answer, κ against gold in `dataset`."""
    gold_kappa: dict[str, float | None] = {}
    if dataset:
        items, annotators, _ids = agreement_items(session, dataset, include_gold=True)
        gold_kappa = kappa_against_gold(items, annotators)
    return [
        {
            "name": person.name,
            "role": person.role,
            "active": person.active,
            "items_done": person.items_done,
            "spans_labelled": person.spans_labelled,
            "median_seconds_per_item": median_seconds_per_item(person.save_times),
            "kappa_vs_gold": gold_kappa.get(person.name),
        }
        for person in team_activity(session)
    ]
