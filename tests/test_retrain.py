"""Retrain, promote, re-score, upload: the loop of issue #6 on a tiny random model and a real database.

Kill -9 and cancel run a real worker process (`python -m core.orchestration.worker`), as the app does.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.base.errors import ModelMismatchError, UserError
from core.orchestration.probe_cache import database_version_dir
from tests.support.capitals import answers, run_retrain, seed
from tests.support.runs import wait_for_run


@pytest.fixture()
def env(isolated_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    return tmp_path / "probes"


def probe_count(database) -> int:
    from db.models import Probe

    with database.sessions() as session:
        return session.scalar(select(func.count()).select_from(Probe))


def test_retrain_registers_a_version_with_metrics_on_the_stored_validation_split(sqlite_db, tiny_lm, env):
    from db.probes import get_probe

    ids = seed(sqlite_db)
    outcome, run_id = run_retrain(sqlite_db, tiny_lm)
    assert outcome.probe_version == 1 and outcome.comparison is None  # nothing active to compare with
    m = outcome.metrics
    validation = [i for i, a in zip(ids, answers()) if a[3] == "validation"]
    assert m["validation_ids"] == validation and m["n_validation"] == len(validation)
    assert m["n_train"] == len(ids) - len(validation)
    for level in ("token", "span_max"):
        assert 0.0 <= m[level]["auc"] <= 1.0 and "recall_at_fpr_0.1" in m[level]
    assert m["label_sources"] == {"gold": len(ids), "majority": 0}
    with sqlite_db.sessions() as session:
        row = get_probe(session, 1)
        assert row.training_data_hash and len(row.training_data_hash) == 64
        folder = env / row.content_hash  # the cache folder, named by the files' content hash
        assert Path(row.artifact_path) == folder
        assert json.loads((folder / "config.json").read_text())["version"] == 1
        assert not row.active
    assert [p.name for p in env.iterdir()] == [folder.name]  # no staging leftovers


def test_second_version_is_compared_with_the_active_one(sqlite_db, tiny_lm, env):
    from core.orchestration.registry import promote

    seed(sqlite_db)
    first, _ = run_retrain(sqlite_db, tiny_lm)
    promote(sqlite_db, first.probe_version, None)
    second, _ = run_retrain(sqlite_db, tiny_lm, epochs=3, seed=1)
    c = second.comparison
    assert c["against"] == 1
    for level in ("token", "span_max"):
        for metric in ("auc", "recall_at_fpr_0.1"):
            row = c[level][metric]
            assert row["a"] == pytest.approx(first.metrics[level][metric])
            assert row["b"] == pytest.approx(second.metrics[level][metric])
            if row["delta"] is not None:
                lo, hi = row["ci"]
                assert lo <= row["delta"] <= hi
    with sqlite_db.sessions() as session:
        from db.probes import get_probe

        assert get_probe(session, 2).parent_version == 1


def test_without_gold_the_annotator_majority_trains(sqlite_db, tiny_lm, env):
    from core.orchestration.retrain import label_summary

    seed(sqlite_db, gold=False, annotators=2)
    summary = label_summary(sqlite_db)
    assert summary["by_source"] == {"majority": len(answers())}
    assert summary["hallucinated_spans"] == len(answers()) // 2
    outcome, _ = run_retrain(sqlite_db, tiny_lm)
    assert outcome.metrics["label_sources"] == {"gold": 0, "majority": len(answers())}
    with pytest.raises(UserError, match="no labelled answers"):
        run_retrain(sqlite_db, tiny_lm, sources=["gold"])


def test_bad_options_are_refused_before_anything_starts(sqlite_db, env):
    from core.orchestration.launcher import start_retrain
    from core.orchestration.retrain import RetrainParams
    from db.models import TrainRun

    for bad in ({"epochs": 0}, {"lr": -1}, {"sources": ["nobody"]}, {"val_fraction": 1.5}, {"layer": -2}):
        with pytest.raises(UserError):
            start_retrain(sqlite_db, RetrainParams(**bad), None)
    with sqlite_db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(TrainRun)) == 0


def test_a_second_start_is_refused_while_one_runs(any_db, env):
    from db.train_runs import create_run, mark_started

    with any_db.sessions() as session, session.begin():
        run = create_run(session, "retrain", {}, None)
        mark_started(session, run.id, os.getpid())  # alive: this very process
    with any_db.sessions() as session, session.begin():
        with pytest.raises(UserError, match=r"already running \(run \d+"):
            create_run(session, "retrain", {}, None)
        create_run(session, "rescore", {"version": 1}, None)  # a re-score may run beside it


def test_a_dead_worker_is_marked_failed_and_the_next_start_works(any_db, env):
    from db.train_runs import create_run, get_run, mark_started

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(done.stdout)
    with any_db.sessions() as session, session.begin():
        run = create_run(session, "retrain", {}, None)
        mark_started(session, run.id, dead_pid)
        run.stage = "train"
        first = run.id
    with any_db.sessions() as session, session.begin():
        second = create_run(session, "retrain", {}, None).id
    with any_db.sessions() as session:
        failed = get_run(session, first)
        assert failed.status == "failed" and "ended without finishing" in failed.error and "train" in failed.error
        assert get_run(session, second).status == "queued"


def test_kill_minus_9_leaves_no_probe_and_the_next_run_works(sqlite_db, tiny_model_dir, env):
    from core.orchestration.launcher import launch
    from db.train_runs import list_runs

    seed(sqlite_db)
    slow = {"model": str(tiny_model_dir), "epochs": 5000, "n_boot": 100}
    run_id = launch(sqlite_db, "retrain", slow, None)
    run = wait_for_run(sqlite_db, run_id, lambda r: r.stage == "train" and r.progress > 0.5)
    os.kill(run.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with sqlite_db.sessions() as session, session.begin():
            status = {r.id: r for r in list_runs(session)}[run_id]
            if status.status == "failed":
                break
        time.sleep(0.1)
    assert status.status == "failed" and "killed or crashed" in status.error
    assert probe_count(sqlite_db) == 0
    assert not [p for p in env.iterdir() if not p.name.startswith(".")] if env.exists() else True

    again = launch(sqlite_db, "retrain", {"model": str(tiny_model_dir), "epochs": 2, "n_boot": 50}, None)
    finished = wait_for_run(sqlite_db, again, lambda r: r.status in ("succeeded", "failed", "cancelled"))
    assert finished.status == "succeeded", finished.error
    assert probe_count(sqlite_db) == 1 and (database_version_dir(sqlite_db, 1) / "probe.safetensors").exists()
    assert finished.timings["total_s"] > 0 and finished.progress == 1.0


def test_cancel_stops_the_worker_and_registers_nothing(sqlite_db, tiny_model_dir, env):
    from core.orchestration.launcher import launch
    from db.train_runs import request_cancel

    seed(sqlite_db)
    run_id = launch(sqlite_db, "retrain", {"model": str(tiny_model_dir), "epochs": 5000}, None)
    wait_for_run(sqlite_db, run_id, lambda r: r.stage == "train")
    with sqlite_db.sessions() as session, session.begin():
        request_cancel(session, run_id, None)
    run = wait_for_run(sqlite_db, run_id, lambda r: r.status != "running", timeout=30)
    assert run.status == "cancelled" and run.error is None
    assert probe_count(sqlite_db) == 0
    with sqlite_db.sessions() as session, session.begin():
        with pytest.raises(UserError, match="not running"):
            request_cancel(session, run_id, None)


def test_promotion_rescores_every_stored_answer_and_rollback_returns(sqlite_db, tiny_lm, env):
    import numpy as np

    from core.orchestration.registry import promote, rollback_target
    from core.orchestration.rescore import rescore
    from core.probes.pipeline import score_generations
    from db.generations import get_generation, to_core, trace_of
    from db.predictions import scores_for
    from db.probes import active_probe

    ids = seed(sqlite_db)
    first, _ = run_retrain(sqlite_db, tiny_lm)
    second, _ = run_retrain(sqlite_db, tiny_lm, epochs=2)
    promote(sqlite_db, first.probe_version, None)
    promote(sqlite_db, second.probe_version, None)
    counts = rescore(sqlite_db, tiny_lm, second.probe_version)
    assert counts == {"scored": len(ids), "tokens_added": len(ids), "total": len(ids)}
    assert rescore(sqlite_db, tiny_lm, second.probe_version)["scored"] == 0  # nothing missing any more
    from core.probes.files import load_probe

    probe, config = load_probe(database_version_dir(sqlite_db, second.probe_version))
    with sqlite_db.sessions() as session:
        row = get_generation(session, ids[5])
        stored, trace = scores_for(session, second.probe_version, ids[5]), trace_of(row)
        gen = to_core(row)
    assert trace is not None and len(stored) == len(trace.token_ids)
    expected = score_generations(tiny_lm, [gen], probe, config)[0].scores
    assert np.allclose(stored, expected, atol=2e-3)  # the cache keeps float16 hidden states
    assert rollback_target(sqlite_db) == first.probe_version
    promote(sqlite_db, first.probe_version, None)
    with sqlite_db.sessions() as session:
        assert active_probe(session).version == first.probe_version


def test_probe_download_and_upload_checked_against_the_model(sqlite_db, tiny_lm, env, tmp_path):
    from core.orchestration.registry import upload_probe
    from core.probes.archive import pack_probe
    from core.probes.config import ProbeConfig
    from core.probes.files import save_probe
    from core.probes.linear import LinearProbe

    seed(sqlite_db)
    first, _ = run_retrain(sqlite_db, tiny_lm)
    data = pack_probe(database_version_dir(sqlite_db, 1))
    version = upload_probe(sqlite_db, tiny_lm, data, None)
    assert version == 2 and probe_count(sqlite_db) == 2
    folders = [database_version_dir(sqlite_db, v) for v in (1, 2)]
    assert (folders[1] / "probe.safetensors").read_bytes() == (folders[0] / "probe.safetensors").read_bytes()

    other = tmp_path / "other"
    import torch

    save_probe(
        other,
        LinearProbe.from_weights(torch.zeros(16), torch.zeros(1)),
        ProbeConfig(model_id="someone/else", tokenizer_hash=None, layer=1, hidden_size=16),
    )
    with pytest.raises(ModelMismatchError, match="someone/else"):
        upload_probe(sqlite_db, tiny_lm, pack_probe(other), None)
    with pytest.raises(UserError, match="not a probe file"):
        upload_probe(sqlite_db, tiny_lm, b"this is not a zip", None)
    assert probe_count(sqlite_db) == 2
    assert sorted(p.name for p in env.iterdir()) == sorted(f.name for f in folders)


def test_cli_retrain_promote_and_runs(sqlite_db, tiny_model_dir, env, monkeypatch, capsys):
    from core.orchestration.cli import main

    seed(sqlite_db)
    monkeypatch.setenv("DATABASE_URL", sqlite_db.engine.url.render_as_string(hide_password=False))
    assert main(["retrain", "--model", str(tiny_model_dir), "--epochs", "2", "--n-boot", "50"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "succeeded" and out["probe_id"]
    assert main(["probes", "--model", str(tiny_model_dir), "promote", "1", "--no-rescore"]) == 0
    assert main(["probes", "--model", str(tiny_model_dir), "rescore", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["scored"] == len(answers())
    assert main(["runs"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in runs] == ["succeeded"]
    assert main(["retrain", "--epochs", "0"]) == 2
    assert re.search(r"epochs must be", capsys.readouterr().err)


def test_a_warm_worker_knows_the_model_without_loading_it(tiny_model_dir, isolated_cache):
    """Facts are written by a full load; a later process gets them without the weights."""
    import core.engine.model as model

    model.load_model(str(tiny_model_dir))  # writes the facts
    saved = dict(model._MODELS)
    model._MODELS.clear()
    try:
        lazy = model.lazy_model(str(tiny_model_dir))
        assert isinstance(lazy, model.LazyModel)
        assert (lazy.num_layers, lazy.hidden_size, lazy.default_layer) == (4, 32, 3)
        assert str(tiny_model_dir) not in model._MODELS  # nothing loaded yet
        assert lazy.tokenizer is not None  # first real use loads it
        assert str(tiny_model_dir) in model._MODELS
        assert lazy.tokenizer_hash == model._MODELS[str(tiny_model_dir)].tokenizer_hash
        with pytest.raises(UserError, match="out of range"):
            lazy.check_layer(9)
    finally:
        model._MODELS.clear()
        model._MODELS.update(saved)


def test_an_answer_imported_without_tokens_is_tokenised_once(sqlite_db, tiny_lm, env):
    from core.orchestration.rescore import tokenise_answer
    from db.generations import get_generation, trace_of

    ids = seed(sqlite_db)
    with sqlite_db.sessions() as session:
        assert trace_of(get_generation(session, ids[0])) is None
    trace = tokenise_answer(sqlite_db, tiny_lm, ids[0])
    with sqlite_db.sessions() as session:
        row = get_generation(session, ids[0])
        stored = trace_of(row)
        assert stored.token_ids == trace.token_ids and "".join(stored.texts) == row.completion
    assert tokenise_answer(sqlite_db, tiny_lm, ids[0]).token_ids == trace.token_ids


def test_a_warm_worker_takes_the_next_run_without_a_new_process(sqlite_db, tiny_model_dir, env, monkeypatch):
    """After its run a worker stays warm; the next press is claimed by it (same pid, no start-up)."""
    from core.orchestration.launcher import idle_workers, launch

    monkeypatch.setenv("PROBELENS_WORKER_IDLE_SECONDS", "20")
    seed(sqlite_db)
    params = {"model": str(tiny_model_dir), "epochs": 2, "n_boot": 20}
    first = wait_for_run(sqlite_db, launch(sqlite_db, "retrain", params, None), lambda r: r.status == "succeeded")
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and first.pid not in idle_workers(sqlite_db):
            time.sleep(0.1)
        assert idle_workers(sqlite_db) == [first.pid]
        second = wait_for_run(sqlite_db, launch(sqlite_db, "retrain", params, None), lambda r: r.status == "succeeded")
        assert second.pid == first.pid and probe_count(sqlite_db) == 2
    finally:
        try:
            os.kill(first.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
