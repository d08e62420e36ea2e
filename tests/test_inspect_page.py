"""Inspect page logic with AppTest on a tiny model and a real SQLite file."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.support.apptest import add_users, sign_in
from tests.support.capitals import run_retrain, seed


@pytest.fixture()
def env(app_database, monkeypatch, tmp_path, tiny_model_dir, tiny_lm, isolated_cache):
    monkeypatch.setenv("PROBELENS_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    add_users(
        app_database,
        ("boss", "boss-password", "admin"),
        ("rita", "reviewer-password", "reviewer"),
        ("ann", "annotator-password", "annotator"),
    )
    ids = seed(app_database)
    run_retrain(app_database, tiny_lm)
    return app_database, ids


def open_inspect(name: str, password: str) -> AppTest:
    return sign_in(name, password, "pages/inspect.py")


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_reviewer_sees_the_probe_and_the_threshold_moves_the_numbers(env):
    at = open_inspect("rita", "reviewer-password")
    assert not at.exception, at.exception
    assert any("v1 (layer 3) on 8 labelled answers (validation)" in c.value for c in at.caption)
    slider = next(s for s in at.slider if s.label == "Threshold")
    seen = set()
    for value in (0.0, 0.5, 1.0):
        slider.set_value(value).run()
        m = metrics(at)
        seen.add((m["Precision"], m["Recall"], m["Flagged"]))
    assert len(seen) == 3  # every position gave different numbers
    slider.set_value(0.0).run()
    assert metrics(at)["Recall"] == "1.000"  # everything flagged at 0
    assert any(
        "Split-conformal guarantee" in str(md.value) or "No finite threshold" in str(md.value) for md in at.markdown
    )


def test_an_annotator_is_refused(env):
    at = open_inspect("ann", "annotator-password")
    assert not at.exception
    assert not at.slider and not at.metric
    assert any("does not have access" in e.value for e in at.error)


def test_a_review_link_opens_that_answer_in_its_dataset(env):
    database, ids = env
    at = sign_in("rita", "reviewer-password")
    at.query_params["generation"] = str(ids[5])
    at.switch_page("pages/review.py")
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="rev-pick").value == ids[5]
