"""The retrain loop with the embedded model for real: import labelled answers (paper format),
retrain through the same call the Probes page makes (a worker process), promote, re-score."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]
CAPITALS = [
    ("France", "Paris", "Marseille"),
    ("Japan", "Tokyo", "Kyoto"),
    ("Italy", "Rome", "Turin"),
    ("Spain", "Madrid", "Valencia"),
    ("Peru", "Lima", "Arequipa"),
    ("Kenya", "Nairobi", "Kisumu"),
    ("Egypt", "Cairo", "Luxor"),
    ("Chile", "Santiago", "Valparaiso"),
    ("Canada", "Ottawa", "Toronto"),
    ("Australia", "Canberra", "Sydney"),
]


def paper_lines() -> list[str]:
    """The paper's JSONL shape: conversation + annotations with span text and index."""
    lines = []
    for n, (country, right, wrong) in enumerate(CAPITALS * 3):
        city = wrong if n % 2 else right
        answer = f"The capital of {country} is {city}, a city with a long history."
        lines.append(
            json.dumps(
                {
                    "id": f"cap-{n}",
                    "conversation": [
                        {"role": "user", "content": f"What is the capital of {country}? (take {n})"},
                        {"role": "assistant", "content": answer},
                    ],
                    "annotations": [
                        {"span": city, "index": answer.index(city), "label": "Not Supported" if n % 2 else "Supported"}
                    ],
                }
            )
        )
    return lines


def wait(database, run_id: int, timeout: float = 300.0):
    from db.train_runs import get_run

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with database.sessions() as session:
            run = get_run(session, run_id)
            if run.status not in ("queued", "running"):
                return run
        time.sleep(0.25)
    raise AssertionError(f"run {run_id} still {run.status} at {run.stage}")


def test_import_retrain_promote_rescore_with_the_embedded_model(sqlite_db, isolated_cache, tmp_path, monkeypatch):
    from sqlalchemy import func, select

    from core.orchestration.imports import import_file
    from core.orchestration.launcher import launch
    from core.orchestration.registry import promote
    from db.models import Generation, Prediction
    from db.probes import active_probe, get_probe

    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    monkeypatch.delenv("PROBELENS_MODEL", raising=False)
    lines = paper_lines()
    train_file, val_file = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    train_file.write_text("\n".join(lines[:22]) + "\n")
    val_file.write_text("\n".join(lines[22:]) + "\n")
    with sqlite_db.sessions() as session, session.begin():
        import_file(session, str(train_file), dataset="capitals", split="train", actor=None)
        import_file(session, str(val_file), dataset="capitals", split="validation", actor=None)

    run_id = launch(sqlite_db, "retrain", {"n_boot": 200}, None)
    run = wait(sqlite_db, run_id)
    assert run.status == "succeeded", run.error
    with sqlite_db.sessions() as session:
        probe = get_probe(session, 1)
        m = probe.metrics
        assert probe.layer == 28 and m["n_train"] == 22 and m["n_validation"] == 8
        assert m["span_max"]["auc"] is not None and m["token"]["auc"] is not None
        assert probe.training_data_hash and run.probe_id == probe.id
        assert set(run.timings) >= {"activations_s", "train_s", "total_s"}

    promote(sqlite_db, 1, None)
    rescore_id = launch(sqlite_db, "rescore", {"version": 1}, None)
    done = wait(sqlite_db, rescore_id)
    assert done.status == "succeeded", done.error
    with sqlite_db.sessions() as session:
        assert active_probe(session).version == 1
        generations = session.scalar(select(func.count()).select_from(Generation))
        predictions = session.scalar(select(func.count()).select_from(Prediction))
        with_tokens = session.scalar(
            select(func.count()).select_from(Generation).where(Generation.token_ids.is_not(None))
        )
    assert generations == predictions == with_tokens == 30
