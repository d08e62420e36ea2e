"""A LoRA probe as a registered version (tiny model): batch generation, live streaming, re-scoring
and Inspect all apply its adapters, and streamed scores equal teacher-forced ones."""

from __future__ import annotations

import pytest

from core.base.decoding import DecodingSettings
from core.base.types import Generation
from core.orchestration.registry import load_version, promote, register_version
from core.probes.config import ProbeConfig
from core.probes.lora import LoraSettings, train_lora_probe
from core.probes.lora_pipeline import save_lora_probe
from tests.support.capitals import answers, seed


@pytest.fixture()
def lora_version(sqlite_db, tiny_lm, isolated_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    gens = [
        Generation([{"role": "user", "content": p}, {"role": "assistant", "content": c}], spans=s)
        for p, c, s, _ in answers()
    ]
    settings = LoraSettings(rank=4, epochs=2, batch_answers=8, lr=5e-3, kl_weight=0.1)
    result = train_lora_probe(tiny_lm, gens, 3, settings)

    def write(staging, version):
        config = ProbeConfig(
            model_id=tiny_lm.model_id,
            tokenizer_hash=tiny_lm.tokenizer_hash,
            layer=3,
            hidden_size=tiny_lm.hidden_size,
            version=version,
            kind="lora",
            lora=settings.to_dict(),
        )
        save_lora_probe(staging, result, config)
        return config

    version = register_version(sqlite_db, write).probe_version
    promote(sqlite_db, version, None)
    return version


def _forced(lm, loaded, conversation, ids):
    return loaded.head.predict(loaded.hidden(lm, conversation, ids)).tolist()


def test_batch_and_rescore_use_the_adapters_and_agree_with_teacher_forcing(sqlite_db, tiny_lm, lora_version):
    from core.orchestration.batch import BatchParams, run_batch
    from core.orchestration.rescore import rescore
    from db.generations import get_generation, trace_of
    from db.predictions import scores_for

    loaded = load_version(sqlite_db, tiny_lm)
    assert loaded.kind == "lora" and loaded.model is not None
    prompts = [[{"role": "user", "content": f"What is the capital of country {i}?"}] for i in range(4)]
    result = run_batch(
        sqlite_db,
        tiny_lm,
        BatchParams(prompts=prompts, dataset="lora", decoding=DecodingSettings(max_new_tokens=10), batch_size=3),
    )
    assert result["probe_version"] == lora_version
    with sqlite_db.sessions() as session:
        stored = [
            (
                get_generation(session, gid).conversation,
                trace_of(get_generation(session, gid)).token_ids,
                scores_for(session, lora_version, gid),
            )
            for gid in result["generation_ids"]
        ]
    base = load_version(sqlite_db, tiny_lm)
    base.model = None  # the same head on the base model's block 3
    for conversation, ids, streamed in stored:
        assert streamed == pytest.approx(_forced(tiny_lm, loaded, conversation, ids), abs=1e-4)
        assert streamed != pytest.approx(_forced(tiny_lm, base, conversation, ids), abs=1e-4)
    counts = rescore(sqlite_db, tiny_lm, lora_version, only_missing=False)
    assert counts["scored"] == 4
    with sqlite_db.sessions() as session:
        for gid in result["generation_ids"]:
            row = get_generation(session, gid)
            assert scores_for(session, lora_version, gid) == pytest.approx(
                _forced(tiny_lm, loaded, row.conversation, trace_of(row).token_ids), abs=1e-4
            )


def test_live_streaming_with_a_lora_probe_equals_teacher_forcing(sqlite_db, tiny_lm, lora_version):
    from core.engine.live import LiveGeneration

    loaded = load_version(sqlite_db, tiny_lm)
    messages = [{"role": "user", "content": "Tell me about Lima."}]
    live = LiveGeneration(
        tiny_lm,
        messages,
        DecodingSettings(max_new_tokens=12, temperature=0.0),
        probe=loaded,
    ).start()
    live.join(60)
    snap = live.snapshot()
    conversation = [*messages, {"role": "assistant", "content": snap.text}]
    assert snap.trace.scores == pytest.approx(_forced(tiny_lm, loaded, conversation, snap.trace.token_ids), abs=1e-4)


def test_inspect_scores_a_lora_version_with_its_adapters(sqlite_db, tiny_lm, lora_version):
    from core.orchestration.eval_sets import evaluation_set

    seed(sqlite_db)
    loaded = load_version(sqlite_db, tiny_lm)
    eval_set = evaluation_set(sqlite_db, tiny_lm, lora_version, splits=None)
    assert eval_set.items
    first = eval_set.prepared[0]
    assert eval_set.items[0].probe.tolist() == pytest.approx(
        _forced(tiny_lm, loaded, first.generation.conversation, first.acts.trace.token_ids), abs=1e-4
    )


def test_a_lora_retrain_registers_a_lora_version_compared_with_the_active_linear_one(
    sqlite_db, tiny_lm, isolated_cache, tmp_path, monkeypatch
):
    from core.orchestration.probe_cache import database_version_dir
    from core.orchestration.registry import versions_table
    from core.probes.files import load_probe
    from tests.support.capitals import run_retrain

    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    seed(sqlite_db)
    linear, _ = run_retrain(sqlite_db, tiny_lm)
    promote(sqlite_db, linear.probe_version, None)
    lora, _ = run_retrain(sqlite_db, tiny_lm, kind="lora", lora_rank=4, epochs=1, layer=3)
    loaded = load_version(sqlite_db, tiny_lm, lora.probe_version)
    assert loaded.kind == "lora" and loaded.config.lora["rank"] == 4
    assert (database_version_dir(sqlite_db, lora.probe_version) / "adapter" / "adapter_config.json").is_file()
    # the paired bootstrap ran between the kinds, on the same validation answers
    assert lora.comparison["against"] == linear.probe_version and "span_max" in lora.comparison
    assert [row["kind"] for row in versions_table(sqlite_db)] == ["lora", "linear"]
    # checkpoints were scored on the validation answers, the start (step 0) among them, and the
    # kept one is recorded with the version: never below the start
    kept = loaded.config.metrics["checkpoints"]
    assert kept["scores"][0]["step"] == 0 and kept["kept_step"] in [s["step"] for s in kept["scores"]]
    assert kept["start_auc"] is None or kept["kept_auc"] >= kept["start_auc"]
    assert load_probe(database_version_dir(sqlite_db, linear.probe_version))[1].kind == "linear"


def test_a_lora_retrains_progress_moves_through_its_training_steps(
    sqlite_db, tiny_lm, isolated_cache, tmp_path, monkeypatch
):
    """A LoRA run fits its starting head with the linear trainer first; that reports as "head",
    so the run's bar (which keeps each stage's furthest point) is not already at the end of
    "train" when the LoRA steps begin, and moves through them."""
    from core.base.progress import CancelToken
    from core.orchestration.retrain import RetrainParams, retrain
    from core.orchestration.runs import _Beat

    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    seed(sqlite_db)
    beat = _Beat(sqlite_db, 0, CancelToken())  # its heartbeat thread is never started: the fractions only
    seen: list[tuple[str, float, str]] = []

    def progress(stage: str, done: int, total: int, message: str = "") -> None:
        beat(stage, done, total, message)
        seen.append((stage, beat.fraction, beat.message))

    retrain(sqlite_db, tiny_lm, RetrainParams(kind="lora", lora_rank=4, epochs=2, layer=3, n_boot=0), progress=progress)
    stages = [stage for stage, _, _ in seen]
    assert "head" in stages and stages.index("head") < stages.index("train")
    train = [(fraction, message) for stage, fraction, message in seen if stage == "train"]
    # the LoRA steps (loss and KL) and, between them, the scoring of checkpoints (which keep the loss)
    assert all("(KL " in message or "checkpoint" in message for _, message in train)
    steps = [fraction for fraction, message in train if "checkpoint" not in message]
    assert steps and all("(KL " in message for _, message in train if "checkpoint" not in message)
    assert steps[0] < 0.6 and train[-1][0] == pytest.approx(0.9) and len(set(steps)) == len(steps)
    assert [fraction for _, fraction, _ in seen] == sorted(fraction for _, fraction, _ in seen)  # only forward


def test_a_lora_version_downloads_and_uploads_as_one_zip(sqlite_db, tiny_lm, lora_version, tmp_path):
    import io
    import zipfile

    from core.orchestration.registry import upload_probe
    from core.probes.archive import pack_probe
    from db.probes import get_probe

    with sqlite_db.sessions() as session:
        path = get_probe(session, lora_version).artifact_path
    data = pack_probe(path)
    assert sorted(zipfile.ZipFile(io.BytesIO(data)).namelist()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "config.json",
        "probe.safetensors",
    ]
    again = upload_probe(sqlite_db, tiny_lm, data, None)
    original, uploaded = load_version(sqlite_db, tiny_lm, lora_version), load_version(sqlite_db, tiny_lm, again)
    assert uploaded.kind == "lora" and uploaded.model is not None
    conversation = [{"role": "user", "content": "Capital of Chile?"}, {"role": "assistant", "content": "Santiago."}]
    assert _forced(tiny_lm, uploaded, conversation, None) == pytest.approx(
        _forced(tiny_lm, original, conversation, None), abs=1e-6
    )
    # a LoRA config without its adapter files is refused, and nothing is registered
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(buffer, "w") as target:
        for name in ("config.json", "probe.safetensors"):
            target.writestr(name, source.read(name))
    from core.base.errors import UserError

    with pytest.raises(UserError, match="a LoRA probe needs adapter_config.json and adapter_model.safetensors"):
        upload_probe(sqlite_db, tiny_lm, buffer.getvalue(), None)
