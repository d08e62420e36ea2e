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


def caption_with(at: AppTest, text: str) -> str:
    return next(c.value for c in at.caption if text in c.value)


def test_metrics_are_the_chosen_versions_and_versions_compare(env, tiny_lm):
    from core.inspect_data import evaluation_set
    from db.probes import get_probe

    database, ids = env
    second, _ = run_retrain(database, tiny_lm, epochs=2, layer=1)
    with database.sessions() as session:
        first_auc = get_probe(session, 1).metrics["span_max"]["auc"]
    at = open_inspect("rita", "reviewer-password")
    assert not at.exception, at.exception
    assert f"AUC {first_auc:.3f}" in caption_with(at, "Threshold-free")  # v1 is active and the default

    at.selectbox(key="insp-version").set_value(second.version).run()
    assert not at.exception, at.exception
    assert "v2 (layer 1) on 8 labelled answers" in caption_with(at, "labelled answers")
    assert f"AUC {second.metrics['span_max']['auc']:.3f}" in caption_with(at, "Threshold-free")

    at.selectbox(key="insp-other").set_value(1).run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "delta" in d.value.columns)
    row = table[(table["level"] == "span_max") & (table["metric"] == "auc")].iloc[0]
    assert row["v2"] == pytest.approx(second.metrics["span_max"]["auc"])
    assert row["v1"] == pytest.approx(first_auc)
    assert row["delta"] == pytest.approx(first_auc - second.metrics["span_max"]["auc"])
    assert row["CI low"] <= row["delta"] <= row["CI high"]

    # the conformal threshold is the 4th smallest of the 4 validation negatives at FPR 0.25
    es = evaluation_set(database, tiny_lm, second.version, splits=["validation"])
    negatives = sorted(float(max(it.probe[it.span_ids == 0])) for it in es.items if it.span_labels[0] == 0)
    assert len(negatives) == 4
    at.number_input(key="insp-fpr").set_value(0.25).run()
    assert metrics(at)["Threshold"] == f"{negatives[3]:.4f}"
    at.number_input(key="insp-fpr").set_value(0.1).run()
    assert metrics(at)["Threshold"] == "none possible"  # 4 negatives cannot promise 10%


def test_data_without_labels_gets_one_clear_message(env):
    from db.generations import get_or_create_dataset

    database, _ids = env
    with database.sessions() as session, session.begin():
        get_or_create_dataset(session, "empty")
    at = open_inspect("boss", "boss-password")
    at.multiselect(key="insp-datasets").set_value(["empty"]).run()
    assert not at.exception, at.exception
    assert [i.value for i in at.info] == ["no labelled answers in the chosen datasets and splits"]
    assert not at.metric and not at.slider
