"""Retrain guard rails in numbers, and old run outcomes leaving the page."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.probes.guard import MIN_ANSWERS, MIN_SPANS_PER_KIND, small_validation_warning, version_validation_warning
from db.train_runs import OUTCOME_NEWS_SECONDS, outcome_is_news


def test_a_one_answer_validation_set_is_called_too_small_with_its_numbers():
    text = small_validation_warning(1, 1, 0)
    assert text.startswith("The validation set holds 1 answer and 1 span (1 hallucinated or unverifiable, 0 supported)")
    assert small_validation_warning(MIN_ANSWERS, MIN_SPANS_PER_KIND, MIN_SPANS_PER_KIND) is None
    assert small_validation_warning(MIN_ANSWERS, MIN_SPANS_PER_KIND - 1, 50) is not None
    assert small_validation_warning(MIN_ANSWERS - 1, 50, 50) is not None


@pytest.mark.parametrize("metrics, expected", [
    ({"counts": {"generations": 1, "spans": 3, "positive_spans": 1}}, "1 answer and 3 spans (1 hallucinated"),
    ({"counts": {"generations": 40, "spans": 60, "positive_spans": 30}}, None),
    ({"counts": {"generations": "1", "spans": None}}, None),  # odd stored metrics: no claim either way
    ("not a dict", None),
])
def test_a_registered_versions_warning_comes_from_its_stored_counts(metrics, expected):
    text = version_validation_warning(metrics)
    assert (text is None) if expected is None else (expected in text)


def test_old_run_outcomes_stop_being_news():
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    recent = {"finished_at": (now - timedelta(seconds=OUTCOME_NEWS_SECONDS - 5)).isoformat()}
    old = {"finished_at": (now - timedelta(seconds=OUTCOME_NEWS_SECONDS + 5)).replace(tzinfo=None).isoformat()}
    assert outcome_is_news(recent, now) and not outcome_is_news(old, now)
    assert outcome_is_news({"finished_at": None}, now)
