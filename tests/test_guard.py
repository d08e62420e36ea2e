"""Retrain guard rails in numbers, and old run outcomes leaving the page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.base.progress import OUTCOME_NEWS_SECONDS, outcome_is_news
from core.probes.guard import MIN_ANSWERS, MIN_SPANS_PER_KIND, small_validation_warning, version_validation_warning


def test_a_one_answer_validation_set_is_called_too_small_with_its_numbers():
    text = small_validation_warning(1, 1, 0)
    assert text.startswith("The validation set holds 1 answer and 1 span (1 hallucinated or unverifiable, 0 supported)")
    assert small_validation_warning(MIN_ANSWERS, MIN_SPANS_PER_KIND, MIN_SPANS_PER_KIND) is None
    assert small_validation_warning(MIN_ANSWERS, MIN_SPANS_PER_KIND - 1, 50) is not None
    assert small_validation_warning(MIN_ANSWERS - 1, 50, 50) is not None


@pytest.mark.parametrize(
    "metrics, expected",
    [
        ({"counts": {"generations": 1, "spans": 3, "positive_spans": 1}}, "1 answer and 3 spans (1 hallucinated"),
        ({"counts": {"generations": 40, "spans": 60, "positive_spans": 30}}, None),
        ({"counts": {"generations": "1", "spans": None}}, None),  # odd stored metrics: no claim either way
        ("not a dict", None),
    ],
)
def test_a_registered_versions_warning_comes_from_its_stored_counts(metrics, expected):
    text = version_validation_warning(metrics)
    assert (text is None) if expected is None else (expected in text)


def test_old_run_outcomes_stop_being_news():
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    recent = (now - timedelta(seconds=OUTCOME_NEWS_SECONDS - 5)).isoformat()
    old = (now - timedelta(seconds=OUTCOME_NEWS_SECONDS + 5)).replace(tzinfo=None).isoformat()
    assert outcome_is_news(recent, now) and not outcome_is_news(old, now)
    assert outcome_is_news(None, now)


def test_a_run_view_carries_its_eta(tmp_path):
    """describe (orchestration) reads the row db returns and adds the pace's ETA."""
    from core.orchestration.run_view import describe
    from db import open_database
    from db.models import RunKind, TrainRun
    from db.train_runs import beat, create_run, mark_started

    database = open_database(f"sqlite:///{tmp_path / 'runs.db'}")
    with database.sessions() as session, session.begin():
        run = create_run(session, RunKind.RESCORE, {"probe_version": 1}, None)
        run_id = run.id
        assert describe(run)["eta_s"] is None and describe(run)["status"] == "queued"
    with database.sessions() as session, session.begin():
        mark_started(session, run_id, None)
        beat(session, run_id, stage="score", progress=0.5, message=None, timings={"eta_s": 30.0})
    with database.sessions() as session:
        view = describe(session.get(TrainRun, run_id))
    assert view["id"] == run_id and view["stage"] == "score" and view["eta_s"] is not None and view["eta_s"] >= 0


def test_counted_words_and_stored_values_read_as_text():
    from core.text.readable import plural, readable

    assert [plural(n, "answer") for n in (0, 1, 2)] == ["0 answers", "1 answer", "2 answers"]
    assert readable({"version": None, "tokens": 12, "active": True}) == "version: —, tokens: 12, active: yes"
    assert readable({"probe_id": 3, "error": None}) == "probe id: 3, error: —"
    assert readable([]) == "—" and readable(32.7879) == "32.8"


def test_the_theme_accent_is_not_an_error_red():
    import colorsys
    import tomllib
    from pathlib import Path

    config = tomllib.loads((Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text())
    colour = config["theme"]["primaryColor"].lstrip("#")
    r, g, b = (int(colour[i : i + 2], 16) / 255 for i in (0, 2, 4))
    hue = colorsys.rgb_to_hsv(r, g, b)[0] * 360
    assert 180 <= hue <= 260  # a blue: focused inputs never look like errors or risk
