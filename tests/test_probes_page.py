"""Probes page logic with AppTest: retrain through the page (a real worker process, tiny model),
second-press refusal, and promotion that starts the re-score. (AppTest cannot drive a file
uploader: the upload check is tested in test_retrain.py and in Chromium.)"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.support.apptest import add_users, plain, sign_in
from tests.support.capitals import answers, run_retrain, seed


@pytest.fixture()
def env(app_database, monkeypatch, tmp_path, tiny_model_dir, isolated_cache):
    monkeypatch.setenv("PROBELENS_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    add_users(app_database, ("boss", "boss-password", "admin"))
    seed(app_database)
    return app_database


def probes_page() -> AppTest:
    at = sign_in("boss", "boss-password", "pages/probes.py")
    assert not at.exception, at.exception
    return at


def press_retrain(at: AppTest) -> None:
    next(b for b in at.button if b.label == "Retrain").click()
    at.run()
    assert not at.exception, at.exception


def wait_run(database, kind: str, timeout: float = 120.0):
    from db.train_runs import latest_run

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with database.sessions() as session:
            run = latest_run(session, kind)
            if run is not None and run.status not in ("queued", "running"):
                return run
        time.sleep(0.2)
    raise AssertionError(f"the {kind} run did not finish")


def test_retrain_from_the_page_registers_a_version_and_promotion_rescores(env):
    from db.models import Prediction
    from db.probes import active_probe

    at = probes_page()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Labelled answers"] == str(len(answers()))
    assert metrics["Gold / majority"] == f"{len(answers())} / 0"
    assert any("No probe yet" in i.value for i in at.info)

    press_retrain(at)
    run = wait_run(env, "retrain")
    assert run.status == "succeeded", run.error
    at.run()
    table = at.dataframe[0].value
    assert list(table["version"]) == [1] and table["span_max AUC"].notna().all()
    assert any("Retrain run" in s.value and "registered v1" in s.value for s in at.success)

    next(b for b in at.button if b.label == "Promote v1 to active").click()
    at.run()
    assert not at.exception, at.exception
    with env.sessions() as session:
        assert active_probe(session).version == 1
    rescored = wait_run(env, "rescore")
    assert rescored.status == "succeeded", rescored.error
    with env.sessions() as session:
        assert session.query(Prediction).count() == len(answers())


def test_a_second_press_while_one_runs_says_so_and_starts_nothing(env):
    from db.models import TrainRun
    from db.train_runs import create_run, mark_started

    with env.sessions() as session, session.begin():
        run = create_run(session, "retrain", {}, None)
        mark_started(session, run.id, os.getpid())
        running_id = run.id
    at = probes_page()
    assert any(f"Retrain run {running_id}" in (p.text or "") for p in at.get("progress"))
    press_retrain(at)
    assert any(f"a retrain is already running (run {running_id}" in plain(e.value) for e in at.error)
    with env.sessions() as session:
        assert session.query(TrainRun).count() == 1


def test_upload_through_the_page_checks_the_model(env, tiny_lm, tmp_path):
    """A probe zip for another model is refused with one message; our own registers as a new version."""
    import torch

    from core.probes.archive import pack_probe
    from core.probes.config import ProbeConfig
    from core.probes.files import save_probe
    from core.probes.linear import LinearProbe
    from db.models import Probe

    outcome, _ = run_retrain(env, tiny_lm)
    other = tmp_path / "other"
    save_probe(
        other,
        LinearProbe.from_weights(torch.zeros(8), torch.zeros(1)),
        ProbeConfig(model_id="someone/else", tokenizer_hash=None, layer=1, hidden_size=8),
    )
    at = probes_page()
    at.file_uploader(key="probe-upload").set_value(("other.zip", pack_probe(other), "application/zip")).run()
    next(b for b in at.button if b.label == "Register uploaded probe").click().run()
    assert any("someone/else" in plain(e.value) for e in at.error)
    with env.sessions() as session:
        assert session.query(Probe).count() == 1
    mine = pack_probe(Path(env.sessions().get(Probe, outcome.probe_id).artifact_path))
    at.file_uploader(key="probe-upload").set_value(("mine.zip", mine, "application/zip")).run()
    next(b for b in at.button if b.label == "Register uploaded probe").click().run()
    assert any("Registered as v2" in s.value for s in at.success)
    assert sorted(at.dataframe[0].value["version"]) == [1, 2]  # #25 bug 7: the table under the message is new
    with env.sessions() as session:
        assert session.query(Probe).count() == 2

    # another admin promotes v1 meanwhile (its re-score still running): this page's promote of v2
    # is refused, and the page is drawn again with the version that is active now
    from core.orchestration.registry import activate_in
    from db.train_runs import create_run, mark_started

    with env.sessions() as session, session.begin():
        activate_in(session, 1, None)
        mark_started(session, create_run(session, "rescore", {}, None).id, os.getpid())
    next(b for b in at.button if b.label == "Promote v2 to active").click().run()
    assert not at.exception, at.exception
    assert any("already running" in plain(e.value) for e in at.error)
    table = at.dataframe[0].value
    assert list(table.loc[table["version"] == 1, "active"]) == ["●"]


def test_guard_rails_warn_of_a_small_validation_set_and_of_a_retrain_that_changes_nothing(env):
    from db.models import TrainRun

    at = probes_page()
    n_val = sum(1 for *_rest, split in answers() if split == "validation")
    small = [w.value for w in at.warning if "The validation set holds" in w.value]
    assert small and f"holds {n_val} answers and {n_val} spans" in small[0]

    press_retrain(at)
    assert wait_run(env, "retrain").status == "succeeded"
    at.run()
    # after: the new version's own metrics carry the same warning, with its numbers
    assert any(w.value.startswith(f"v1: The validation set holds {n_val} answers") for w in at.warning)

    # nothing changed since v1: the page says so and starts nothing until asked
    press_retrain(at)
    assert any("Nothing has changed since v1" in w.value for w in at.warning)
    with env.sessions() as session:
        assert session.query(TrainRun).count() == 1
    next(b for b in at.button if b.label == "Skip").click()
    at.run()
    assert not any("Nothing has changed" in w.value for w in at.warning)
    press_retrain(at)
    next(b for b in at.button if b.label == "Retrain anyway").click()
    at.run()
    assert not at.exception, at.exception
    with env.sessions() as session:
        assert session.query(TrainRun).count() == 2
    assert wait_run(env, "retrain").status == "succeeded"


def test_lora_settings_show_only_for_lora_and_every_delta_says_new_minus_reference(env, tiny_lm):
    from core.text.readable import fitted_widths

    run_retrain(env, tiny_lm, epochs=2)
    from core.orchestration.registry import promote

    promote(env, 1, None)
    run_retrain(env, tiny_lm, epochs=3)
    at = probes_page()
    lora_labels = {"LoRA rank", "Adapters from block", "KL weight"}
    assert not lora_labels & {n.label for n in at.number_input}  # linear: no LoRA fields
    at.radio(key="rt-kind").set_value("lora").run()
    assert lora_labels <= {n.label for n in at.number_input}
    versions = at.dataframe[0].value
    assert "Δ span_max AUC (this − vs)" in versions.columns
    comparison = next(d.value for d in at.dataframe if "P(new better)" in d.value.columns)
    assert "Δ (new − active)" in comparison.columns and "delta" not in comparison.columns
    widths = fitted_widths(versions.to_dict("records"))
    assert widths["Δ span_max AUC (this − vs)"] >= len("Δ span_max AUC (this − vs)") * 8  # the header fits


def test_a_column_is_as_wide_as_its_header_or_longest_value():
    from core.text.readable import CHAR_PX, MAX_PX, PAD_PX, fitted_widths

    widths = fitted_widths([{"v": 1, "a rather long heading": 0.5, "text": "x" * 30}, {"v": 12, "text": None}])
    assert widths["a rather long heading"] == len("a rather long heading") * CHAR_PX + PAD_PX
    assert widths["text"] == 30 * CHAR_PX + PAD_PX
    assert fitted_widths([{"t": "y" * 1000}])["t"] == MAX_PX


def test_train_validation_figures_and_the_guard_count_the_same_answers(env):
    """#25 bug 5: with no stored validation answers the page said "Train / validation 32 / 0"
    and, under it, "The validation set holds 3 answers": both now read the split a retrain uses."""
    from sqlalchemy import update

    from core.orchestration.retrain import label_summary
    from db.models import Generation

    with env.sessions() as session, session.begin():
        session.execute(update(Generation).values(split="train"))
    used = label_summary(env)["used"]
    assert used["validation"] > 0 and used["train"] + used["validation"] == len(answers())
    at = probes_page()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Train / validation"] == f"{used['train']} / {used['validation']}"
    small = [w.value for w in at.warning if "The validation set holds" in w.value]
    assert small and small[0].startswith(f"The validation set holds {used['validation']} answers"), small
