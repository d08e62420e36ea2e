"""Inspect → Errors: the answer's heatmap outlines the labelled spans the list judges, not every
token the threshold flags (issue #14, item 13: at a low threshold nearly every token was outlined)."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.mistakes import flagged_spans, top_errors
from core.components.heatmap_data import TokenView, heatmap_payload
from core.probes.metrics import ItemScores
from tests.support.heatmap_reference import token_outcomes

ANSWER = "Lviv was founded in 1256 by Daniel, a prince of Galicia."
WORDS = ["Lviv", " was", " founded", " in", " 1256", " by", " Daniel", ",", " a", " prince", " of", " Galicia", "."]
# labelled spans: "Lviv" supported (token 0), "1256" hallucinated (token 4), "Galicia" supported (token 11)
GOLD = [
    {"start": 0, "end": 4, "label": "Supported"},
    {"start": 20, "end": 24, "label": "Not Supported"},
    {"start": 48, "end": 55, "label": "Supported"},
]
SPAN_TOKENS = {0: 0, 4: 1, 11: 2}
SCORES = [0.30, 0.05, 0.10, 0.20, 0.70, 0.02, 0.40, 0.01, 0.03, 0.15, 0.04, 0.60, 0.01]


def item_and_view() -> tuple[ItemScores, TokenView, list[tuple[int, int]]]:
    n = len(WORDS)
    span_ids = np.array([SPAN_TOKENS.get(i, -1) for i in range(n)])
    labels = np.array([1 if i == 4 else 0 for i in range(n)], dtype=np.int8)
    item = ItemScores(
        labels=labels,
        span_ids=span_ids,
        span_labels=np.array([0, 1, 0], dtype=np.int8),
        probe=np.array(SCORES),
        logprobs=np.zeros(n),
        entropies=np.zeros(n),
    )
    view = TokenView.from_lists(WORDS, scores=SCORES)
    assert "".join(WORDS) == ANSWER
    chars = [(view.starts[t], view.ends[t]) for t in sorted(SPAN_TOKENS)]
    chars = [(s + 1 if ANSWER[s] == " " else s, e) for s, e in chars]  # token-snapped, trimmed
    return item, view, chars


def outlined_runs(outcomes: list[str | None]) -> list[tuple[int, int]]:
    """Maximal runs of outlined tokens: what a reader sees as separate outlined spans."""
    runs, first = [], None
    for i, o in enumerate([*outcomes, None]):
        if o and first is None:
            first = i
        elif not o and first is not None:
            runs.append((first, i))
            first = None
    return runs


def test_at_threshold_zero_only_the_labelled_spans_are_outlined():
    item, view, chars = item_and_view()
    # what the page drew before: every token judged on its own score outlines the whole answer
    before = token_outcomes(heatmap_payload(view, threshold=0.0, gold_spans=GOLD))
    assert sum(o is not None for o in before) == len(WORDS)

    predicted = flagged_spans(item, chars, 0.0)
    outcomes = token_outcomes(heatmap_payload(view, threshold=0.0, gold_spans=GOLD, predicted_spans=predicted))
    assert outlined_runs(outcomes) == [(0, 1), (4, 5), (11, 12)]  # three spans, not thirteen tokens
    assert [outcomes[i] for i in (0, 4, 11)] == ["FP", "TP", "FP"]
    errors = top_errors([item], ["1"], [ANSWER], [chars], threshold=0.0)
    listed = {(e["start"], e["end"]) for e in errors["false_positives"] + errors["false_negatives"]}
    assert listed == {chars[0], chars[2]}  # every outlined error is a listed one


@pytest.mark.parametrize(
    "threshold, expected",
    [
        (0.5, {0: None, 4: "TP", 11: "FP"}),  # Galicia's 0.60 flags it; Lviv's 0.30 does not
        (0.65, {0: None, 4: "TP", 11: None}),
        (0.9, {0: None, 4: "FN", 11: None}),  # the hallucinated year is missed
    ],
)
def test_outlines_follow_the_span_level_judgement_of_the_error_list(threshold, expected):
    item, view, chars = item_and_view()
    outcomes = token_outcomes(
        heatmap_payload(
            view, threshold=threshold, gold_spans=GOLD, predicted_spans=flagged_spans(item, chars, threshold)
        )
    )
    assert {i: outcomes[i] for i in expected} == expected
    assert all(outcomes[i] is None for i in range(len(WORDS)) if i not in SPAN_TOKENS)  # background never


def test_flagged_spans_needs_one_range_per_span():
    item, _view, chars = item_and_view()
    with pytest.raises(ValueError, match="3 span labels but 2"):
        flagged_spans(item, chars[:2], 0.5)
