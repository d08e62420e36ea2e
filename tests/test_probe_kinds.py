"""The probe-kind table is the only place a kind is named: a toy third kind, registered here and
nowhere else, goes through retrain -> register -> promote -> live streaming -> batch generation
-> re-score -> Inspect -> export/upload with its own scoring (tiny model, SQLite file)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.base.decoding import DecodingSettings
from core.base.errors import UserError
from core.orchestration.registry import load_version, promote, versions_table
from core.probes.kinds import KINDS, LinearKind, kind_of
from tests.support.capitals import run_retrain, seed


class ScaledKind(LinearKind):
    """A toy kind: the linear head with its logit doubled (a sharper probe on the same states)."""

    name = "scaled"
    noun = "scaled probe"
    description = "Scaled (the linear head, logit x2)"

    def score(self, head, hidden):
        as_numpy = not isinstance(hidden, torch.Tensor)
        x = torch.from_numpy(np.asarray(hidden)) if as_numpy else hidden
        with torch.no_grad():
            p = torch.sigmoid(2 * head(x.to(torch.float32)))
        return p.numpy() if as_numpy else p


@pytest.fixture()
def scaled(monkeypatch, tmp_path, isolated_cache):
    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    monkeypatch.setitem(KINDS, "scaled", ScaledKind())
    return KINDS["scaled"]


def _forced(lm, probe, conversation, ids) -> list[float]:
    return probe.predict(probe.hidden(lm, conversation, ids)).tolist()


def _plain(lm, probe, conversation, ids) -> list[float]:
    return probe.head.predict(probe.hidden(lm, conversation, ids)).tolist()


def test_a_kind_registered_in_the_table_alone_goes_from_retrain_to_scores(sqlite_db, tiny_lm, scaled):
    from core.engine.live import LiveGeneration
    from core.orchestration.batch import BatchParams, run_batch
    from core.orchestration.eval_sets import evaluation_set
    from core.orchestration.rescore import rescore
    from db.generations import get_generation, trace_of
    from db.predictions import scores_for

    seed(sqlite_db)
    outcome, _run = run_retrain(sqlite_db, tiny_lm, kind="scaled")
    assert outcome.metrics["kind"] == "scaled"
    probe_version = outcome.probe_version
    row = next(r for r in versions_table(sqlite_db) if r["version"] == probe_version)
    assert row["kind"] == "scaled"

    promote(sqlite_db, probe_version, None)
    probe = load_version(sqlite_db, tiny_lm)
    assert probe.probe_version == probe_version and probe.kind == "scaled" and probe.model is None
    assert probe.implementation is scaled

    # live streaming scores with the kind's own scoring, equal to teacher forcing
    messages = [{"role": "user", "content": "Tell me about Lima."}]
    live = LiveGeneration(tiny_lm, messages, DecodingSettings(max_new_tokens=10, temperature=0.0), probe=probe).start()
    live.join(60)
    snap = live.snapshot()
    assert snap.error is None and snap.trace.token_ids
    conversation = [*messages, {"role": "assistant", "content": snap.text}]
    assert snap.trace.scores == pytest.approx(_forced(tiny_lm, probe, conversation, snap.trace.token_ids), abs=1e-4)
    assert snap.trace.scores != pytest.approx(_plain(tiny_lm, probe, conversation, snap.trace.token_ids), abs=1e-4)

    # batch generation stores the toy's scores; a re-score (teacher forced) gives them again
    prompts = [[{"role": "user", "content": f"What is the capital of country {i}?"}] for i in range(3)]
    result = run_batch(
        sqlite_db, tiny_lm, BatchParams(prompts=prompts, dataset="toy", decoding=DecodingSettings(max_new_tokens=8))
    )
    assert result["probe_version"] == probe_version
    with sqlite_db.sessions() as session:
        streamed = {gid: scores_for(session, probe_version, gid) for gid in result["generation_ids"]}
    counts = rescore(sqlite_db, tiny_lm, probe_version, only_missing=False)
    assert counts["scored"] >= len(prompts)
    with sqlite_db.sessions() as session:
        for gid in result["generation_ids"]:
            gen = get_generation(session, gid)
            forced = _forced(tiny_lm, probe, gen.conversation, trace_of(gen).token_ids)
            assert streamed[gid] == pytest.approx(forced, abs=1e-4)
            assert scores_for(session, probe_version, gid) == pytest.approx(forced, abs=1e-4)

    # Inspect's evaluation set scores with the kind too
    eval_set = evaluation_set(sqlite_db, tiny_lm, probe_version, splits=None)
    first = eval_set.prepared[0]
    assert eval_set.items[0].probe.tolist() == pytest.approx(
        _forced(tiny_lm, probe, first.generation.conversation, first.acts.trace.token_ids), abs=1e-4
    )


def test_a_toy_kind_travels_by_zip_and_an_unknown_kind_is_refused(sqlite_db, tiny_lm, scaled, monkeypatch):
    from core.orchestration.probe_cache import database_version_dir
    from core.orchestration.registry import upload_any
    from core.probes.archive import pack_probe

    seed(sqlite_db)
    outcome, _run = run_retrain(sqlite_db, tiny_lm, kind="scaled")
    data = pack_probe(database_version_dir(sqlite_db, outcome.probe_version))
    uploaded = upload_any(sqlite_db, tiny_lm, data, None)
    assert load_version(sqlite_db, tiny_lm, uploaded).kind == "scaled"
    assert next(r for r in versions_table(sqlite_db) if r["version"] == uploaded)["kind"] == "scaled"

    monkeypatch.delitem(KINDS, "scaled")
    before = len(versions_table(sqlite_db))
    with pytest.raises(UserError, match="unknown probe kind 'scaled'"):
        upload_any(sqlite_db, tiny_lm, data, None)
    assert len(versions_table(sqlite_db)) == before
    with pytest.raises(UserError, match="unknown probe kind"):
        load_version(sqlite_db, tiny_lm, outcome.probe_version)


def test_retrain_refuses_a_kind_the_table_does_not_hold():
    from core.orchestration.retrain import RetrainParams

    with pytest.raises(UserError, match="probe kind must be one of 'linear', 'lora'"):
        RetrainParams(kind="scaled").validate()
    with pytest.raises(UserError, match="unknown probe kind 'nope'"):
        kind_of("nope")


def test_every_kind_in_the_table_implements_the_protocol():
    for name, kind in KINDS.items():
        assert kind.name == name and kind.noun and kind.description
        for method in ("check_options", "config_fields", "train", "train_from_generations", "save"):
            assert callable(getattr(kind, method))
        for method in ("check_files", "prepare", "score", "describe"):
            assert callable(getattr(kind, method))
