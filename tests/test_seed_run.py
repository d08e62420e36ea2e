"""The demo seed is a worker run like retrain and batch: progress on its row, cancel, nothing half-made."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.orchestration.launcher import start_seed
from core.orchestration.seed import DEMO_DATASET, needs_seed
from db.models import Dataset, Generation, Probe, RunKind
from db.train_runs import get_run, request_cancel
from tests.support.runs import wait_for_run

SEED_SIZE = 140  # the embedded-model seed below (the app's default is 200)


@pytest.fixture()
def probes_dir(isolated_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    return tmp_path / "probes"


def test_a_cancelled_seed_leaves_no_answers_no_probe_and_no_folder(sqlite_db, tiny_model_dir, probes_dir):
    run_id = start_seed(sqlite_db, size=200, model=str(tiny_model_dir))
    with sqlite_db.sessions() as session:
        assert get_run(session, run_id).kind == RunKind.SEED
    # progress is on the row while it generates
    running = wait_for_run(sqlite_db, run_id, lambda r: r.stage == "generate" and (r.progress or 0) > 0.05)
    assert "generate" in (running.message or "")
    with sqlite_db.sessions() as session, session.begin():
        request_cancel(session, run_id, None)
    done = wait_for_run(sqlite_db, run_id, lambda r: r.status not in ("queued", "running"))
    assert done.status == "cancelled"
    with sqlite_db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Dataset).where(Dataset.name == DEMO_DATASET)) == 0
        assert session.scalar(select(func.count()).select_from(Probe)) == 0
    assert needs_seed(sqlite_db)
    assert not probes_dir.exists() or not any(probes_dir.iterdir())


def test_a_second_seed_is_refused_while_one_runs(sqlite_db, tiny_model_dir, probes_dir):
    from core.base.errors import UserError

    first = start_seed(sqlite_db, size=200, model=str(tiny_model_dir))
    with pytest.raises(UserError, match="already running"):
        start_seed(sqlite_db, size=5, model=str(tiny_model_dir))
    with sqlite_db.sessions() as session, session.begin():
        request_cancel(session, first, None)
    assert wait_for_run(sqlite_db, first, lambda r: r.status not in ("queued", "running")).status == "cancelled"


@pytest.mark.integration
def test_the_seed_run_stores_labelled_answers_and_activates_a_probe_that_beats_log_prob(sqlite_db, probes_dir):
    # The embedded model in a worker run, as the app starts it, on 140 answers instead of the
    # default 200: generating is most of the time, and 140 still leave about 40 validation answers
    # with more than 20 spans for the comparison with log-prob below.
    run_id = start_seed(sqlite_db, size=SEED_SIZE)
    done = wait_for_run(sqlite_db, run_id, lambda r: r.status not in ("queued", "running"), timeout=900)
    assert done.status == "succeeded", done.error
    assert done.message == f"demo: {SEED_SIZE} answers, probe v1"
    with sqlite_db.sessions() as session:
        answers = session.scalar(
            select(func.count()).select_from(Generation).join(Dataset).where(Dataset.name == DEMO_DATASET)
        )
        probe = session.scalar(select(Probe))
        assert answers == SEED_SIZE
        assert probe.version == 1 and probe.active
        # on its validation answers the demo probe beats the log-prob baseline at the headline level
        metrics = probe.metrics
        assert metrics["counts"]["spans"] >= 20
        assert metrics["span_max"]["auc"] > metrics["baselines"]["logprob"]["span_max"]["auc"]
    assert (probes_dir / probe.content_hash / "config.json").is_file()  # the cache folder, by content hash
    assert not needs_seed(sqlite_db)
    # a second seed finds the demo there and does nothing
    again = wait_for_run(sqlite_db, start_seed(sqlite_db), lambda r: r.status not in ("queued", "running"))
    assert again.status == "succeeded" and again.message == "the demo data already exists"


def test_the_cli_starts_a_seed_in_the_background_and_runs_cancels_it(
    sqlite_db, tiny_model_dir, probes_dir, monkeypatch, capsys
):
    import json

    from core.orchestration.cli import main

    monkeypatch.setenv("DATABASE_URL", sqlite_db.engine.url.render_as_string(hide_password=False))
    assert main(["seed", "--size", "200", "--model", str(tiny_model_dir), "--background"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run"]
    wait_for_run(sqlite_db, run_id, lambda r: r.status == "running")
    assert main(["runs", "--cancel", str(run_id)]) == 0
    assert wait_for_run(sqlite_db, run_id, lambda r: r.status not in ("queued", "running")).status == "cancelled"
    assert needs_seed(sqlite_db)


def test_the_seed_fills_the_activation_cache_for_the_first_retrain(sqlite_db, tiny_lm, probes_dir):
    from core.orchestration.retrain import RetrainParams, retrain
    from core.orchestration.seed import seed_demo

    result = seed_demo(sqlite_db, tiny_lm, size=12, batch_size=5)
    assert result["answers"] == 12 and result["activated"]
    seen: list[tuple[str, int, int, str]] = []
    retrain(
        sqlite_db,
        tiny_lm,
        RetrainParams(model=None, n_boot=50),
        progress=lambda stage, done, total, msg="": seen.append((stage, done, total, msg)),
    )
    extract = [s for s in seen if s[0] == "extract"]
    # the first look at the cache finds every answer: the model never runs over them again
    assert extract[0][1:3] == (12, 12) and extract[0][3] == "12 cached"


def test_the_seed_never_replaces_a_probe_promoted_meanwhile(sqlite_db, tiny_lm, probes_dir):
    from core.orchestration.seed import seed_demo
    from db.generations import delete_dataset
    from db.probes import active_probe

    assert seed_demo(sqlite_db, tiny_lm, size=6)["activated"]  # nothing was active: v1 is
    with sqlite_db.sessions() as session, session.begin():
        delete_dataset(session, DEMO_DATASET, None)  # the demo is gone, an active probe (v1) stays
    again = seed_demo(sqlite_db, tiny_lm, size=6)
    assert again["probe_version"] == 2 and not again["activated"]
    with sqlite_db.sessions() as session:
        assert active_probe(session).version == 1


def test_the_seed_stores_its_probes_scores_with_its_answers(sqlite_db, tiny_lm, probes_dir):
    """The team's day, third round, bug 2: the demo's answers are coloured as soon as its probe is
    active, with the scores teacher forcing gives (no re-score run needed)."""
    from core.orchestration.registry import load_version
    from core.orchestration.seed import seed_demo
    from db.generations import generation_ids, get_generation, to_core, trace_of
    from db.predictions import scores_for

    result = seed_demo(sqlite_db, tiny_lm, size=8, batch_size=4)
    assert result["activated"]
    probe = load_version(sqlite_db, tiny_lm, result["probe_version"])
    with sqlite_db.reading() as session:
        ids = generation_ids(session)
        assert len(ids) == 8
        for generation_id in ids:
            row = get_generation(session, generation_id)
            trace = trace_of(row)
            stored = scores_for(session, result["probe_version"], generation_id)
            assert stored is not None and len(stored) == len(trace.token_ids), generation_id
            forced = probe.predict(probe.hidden(tiny_lm, to_core(row).conversation, trace.token_ids))
            assert stored == pytest.approx([float(x) for x in forced.reshape(-1).tolist()], abs=1e-4)
