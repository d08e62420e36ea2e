"""One rule for "tokens over the threshold form a span": `core.text.tokens.runs_over`.

Suggestions (core.text.editing), predicted spans (core.probes.pipeline), the review's probe
spans (db.review) and the live early stop (core.engine.live) all take their runs from it;
these tests pin the rule once and check every user agrees with it on the same scores.
"""

from __future__ import annotations

import math
import random

from core.analysis.review_compare import probe_spans
from core.engine.live import EarlyStopRule
from core.probes.pipeline import spans_from_scores
from core.text.editing import suggest_spans
from core.text.tokens import over_threshold, runs_over, trailing_run, true_runs

NAN = float("nan")


def test_true_runs_are_maximal_half_open_ranges():
    assert true_runs([]) == []
    assert true_runs([False, False]) == []
    assert true_runs([True]) == [(0, 1)]
    assert true_runs([True, True, False, True, False, False, True, True]) == [(0, 2), (3, 4), (6, 8)]


def test_unknown_scores_are_never_over_and_split_runs():
    assert over_threshold(0.5, 0.5) and not over_threshold(0.4999, 0.5)
    assert not over_threshold(None, 0.0) and not over_threshold(NAN, 0.0)
    assert runs_over([0.9, NAN, 0.8, None, 0.7, 0.1, 0.5], 0.5) == [(0, 1), (2, 3), (4, 5), (6, 7)]
    assert runs_over([0.1, 0.2], 0.5) == [] and runs_over([], 0.5) == []


def test_trailing_run_is_the_last_run_when_it_ends_now():
    rng = random.Random(7)
    for _ in range(300):
        scores = [rng.choice([None, NAN, rng.random()]) for _ in range(rng.randint(0, 12))]
        runs = runs_over(scores, 0.5)
        expected = runs[-1][0] if runs and runs[-1][1] == len(scores) else len(scores)
        assert trailing_run(scores, 0.5) == expected, scores


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def test_every_user_takes_the_same_runs():
    text = "ab cd ef gh ij"
    offsets = [(0, 2), (2, 3), (3, 5), (5, 6), (6, 8), (8, 9), (9, 11), (11, 12), (12, 14)]
    rng = random.Random(3)
    for _ in range(200):
        scores = [rng.choice([NAN, rng.random()]) for _ in offsets]
        runs = runs_over(scores, 0.5)
        expected = [(offsets[a][0], offsets[b - 1][1]) for a, b in runs]
        assert [(s, e) for s, e, _ in spans_from_scores(offsets, scores, 0.5)] == expected
        assert [(s.start, s.end) for s in probe_spans(offsets, scores, 0.5)] == expected
        # Suggestions trim whitespace and drop whitespace-only runs: the same runs, trimmed.
        trimmed = [_strip(text, s, e) for s, e in expected]
        assert [(g.start, g.end) for g in suggest_spans(offsets, scores, 0.5, text)] == [
            (s, e) for s, e in trimmed if s < e
        ]
        for (_, _, top), (a, b) in zip(spans_from_scores(offsets, scores, 0.5), runs):
            assert top == max(scores[a:b]) and not math.isnan(top)


def test_span_early_stop_uses_the_run_ending_now():
    rule = EarlyStopRule("span", threshold=0.7, span_floor=0.5)
    texts = ["The", " city", " Lem", "berg", "."]
    assert rule.check([0.1, 0.2], texts[:2]) is None
    assert rule.check([0.1, 0.9], texts[:2]) is None  # one token is not a span
    note = rule.check([0.1, 0.6, 0.9, 0.8], texts[:4])
    assert note is not None and "tokens 2-4" in note and "' city Lemberg'" in note and "0.77" in note
    # A token under the floor ends the run: the earlier high tokens no longer count.
    assert rule.check([0.9, 0.9, 0.1, 0.9], texts[:4]) is None
    assert rule.check([0.9, NAN, 0.9, 0.9], texts[:4]) is not None  # the run after the NaN: tokens 3-4
    assert "tokens 3-4" in (rule.check([0.9, NAN, 0.9, 0.9], texts[:4]) or "")
    # Mean under the threshold: no stop.
    assert rule.check([0.1, 0.55, 0.6], texts[:3]) is None


def test_token_early_stop():
    rule = EarlyStopRule("token", threshold=0.8)
    assert rule.check([0.1, 0.79], ["a", "b"]) is None
    note = rule.check([0.1, 0.8], ["a", "b"])
    assert note is not None and "token 2 ('b')" in note
