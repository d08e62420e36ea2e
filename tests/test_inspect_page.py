"""Inspect page logic with AppTest on a tiny model and a real SQLite file."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_retrain import run_retrain, seed

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def env(tmp_path, monkeypatch, tiny_model_dir, tiny_lm, isolated_cache):
    import streamlit as st

    from db import open_database
    from db.users import add_user

    url = f"sqlite:///{tmp_path / 'app.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("PROBELENS_SEED_DEMO", "0")
    monkeypatch.setenv("PROBELENS_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    monkeypatch.chdir(REPO)
    st.cache_resource.clear()
    database = open_database(url)
    with database.sessions() as session, session.begin():
        add_user(session, "boss", "boss-password", role="admin")
        add_user(session, "rita", "reviewer-password", role="reviewer")
        add_user(session, "ann", "annotator-password", role="annotator")
    ids = seed(database)
    run_retrain(database, tiny_lm)
    yield database, ids
    database.dispose()
    st.cache_resource.clear()


def open_inspect(name: str, password: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    fields = {t.label: t for t in at.text_input}
    fields["User name"].input(name)
    fields["Password"].input(password)
    at.button[0].click()
    at.run()
    at.switch_page("pages/inspect_probe.py")
    at.run()
    return at


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
    assert any("Split-conformal guarantee" in str(md.value) or "No finite threshold" in str(md.value)
               for md in at.markdown)


def test_an_annotator_is_refused(env):
    at = open_inspect("ann", "annotator-password")
    assert not at.exception
    assert not at.slider and not at.metric
    assert any("does not have access" in e.value for e in at.error)


def test_a_review_link_opens_that_answer_in_its_dataset(env):
    database, ids = env
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    fields = {t.label: t for t in at.text_input}
    fields["User name"].input("rita")
    fields["Password"].input("reviewer-password")
    at.button[0].click()
    at.run()
    at.query_params["generation"] = str(ids[5])
    at.switch_page("pages/review.py")
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="rev-pick").value == ids[5]
