"""LoRA probes from the CLI with the tiny model: train --kind lora, the probe folder (head +
PEFT adapter), score and evaluate with the adapters applied, and the model check on load."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from core.base.errors import ModelMismatchError, UserError
from core.orchestration.cli import main
from tests.support.capitals import answers


@pytest.fixture()
def labelled(tmp_path):
    path = tmp_path / "labelled.jsonl"
    rows = [
        {
            "id": f"c{n}",
            "conversation": [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}],
            "spans": [{"start": s.start, "end": s.end, "label": s.label} for s in spans],
        }
        for n, (prompt, completion, spans, _split) in enumerate(answers())
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_train_score_and_evaluate_a_lora_probe(tmp_path, labelled, tiny_model_dir, tiny_lm, isolated_cache, capsys):
    from core.probes.lora import lora_hidden
    from core.probes.lora_pipeline import load_lora_probe

    out = tmp_path / "lora-probe"
    code = main(
        [
            "--quiet",
            "train",
            "--data",
            str(labelled),
            "--out",
            str(out),
            "--model",
            str(tiny_model_dir),
            "--kind",
            "lora",
            "--lora-rank",
            "4",
            "--lora-layers",
            "1-3",
            "--kl-weight",
            "0.5",
            "--epochs",
            "2",
            "--layer",
            "3",
            "--checkpoint-every",
            "1",
        ]
    )
    assert code == 0, capsys.readouterr().err
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["checkpoints"]["every"] == 1
    assert [c["step"] for c in metrics["checkpoints"]["scores"]] == list(range(metrics["checkpoints"]["last_step"] + 1))
    assert metrics["kind"] == "lora" and metrics["split"] == "validation" and "span_max" in metrics
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "lora" and config["lora"]["rank"] == 4 and config["lora"]["first_layer"] == 1
    assert config["lora"]["kl_weight"] == 0.5 and (out / "adapter" / "adapter_config.json").is_file()
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["layers_to_transform"] == [1, 2, 3]

    scored = tmp_path / "scored.jsonl"
    assert (
        main(
            [
                "--quiet",
                "score",
                "--data",
                str(labelled),
                "--probe",
                str(out),
                "--out",
                str(scored),
                "--model",
                str(tiny_model_dir),
            ]
        )
        == 0
    )
    first = json.loads(scored.read_text().splitlines()[0])
    model, head, _ = load_lora_probe(tiny_lm, out)
    hidden = lora_hidden(tiny_lm, model, first["conversation"], 3, first["tokens"]["ids"])
    assert first["tokens"]["scores"] == pytest.approx(head.predict(hidden).tolist(), abs=1e-6)
    # the adapters matter once a trained checkpoint is kept: the same head on the base model's
    # block 3 scores differently; when the start (checkpoint 0) scored best, they change nothing
    from core.engine.scoring import score_conversation

    base = score_conversation(tiny_lm, first["conversation"], [3], first["tokens"]["ids"]).hidden[3]
    kept = metrics["checkpoints"]
    assert kept["scores"][0]["step"] == 0 and config["metrics"]["checkpoints"] == kept
    same = torch.allclose(head.predict(base), head.predict(hidden), atol=1e-5)
    assert same == (kept["kept_step"] == 0), kept

    capsys.readouterr()
    assert (
        main(["--quiet", "evaluate", "--data", str(labelled), "--probe", str(out), "--model", str(tiny_model_dir)]) == 0
    )
    assert json.loads(capsys.readouterr().out)["kind"] == "lora"


def test_a_lora_probe_refuses_another_model_and_bad_options(
    tmp_path, labelled, tiny_model_dir, tiny_lm, isolated_cache, capsys
):
    from core.base.types import Generation
    from core.engine.model import load_model
    from core.probes.config import ProbeConfig
    from core.probes.lora import LoraSettings, train_lora_probe
    from core.probes.lora_pipeline import load_lora_probe, save_lora_probe

    gens = [
        Generation([{"role": "user", "content": p}, {"role": "assistant", "content": c}], spans=s)
        for p, c, s, _ in answers()[:8]
    ]
    result = train_lora_probe(tiny_lm, gens, 3, LoraSettings(rank=2, batch_answers=8))
    folder = save_lora_probe(
        tmp_path / "p",
        result,
        ProbeConfig(
            model_id=tiny_lm.model_id,
            tokenizer_hash=tiny_lm.tokenizer_hash,
            layer=3,
            hidden_size=tiny_lm.hidden_size,
            kind="lora",
            lora=LoraSettings(rank=2).to_dict(),
        ),
    )
    other_dir = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other_dir)
    with pytest.raises(ModelMismatchError, match="other-model"):
        load_lora_probe(load_model(str(other_dir)), folder)
    shutil.rmtree(folder / "adapter")
    with pytest.raises(UserError, match="its adapter files are missing"):
        load_lora_probe(tiny_lm, folder)
    assert (
        main(
            [
                "--quiet",
                "train",
                "--data",
                str(labelled),
                "--out",
                str(tmp_path / "x"),
                "--model",
                str(tiny_model_dir),
                "--kind",
                "lora",
                "--lora-layers",
                "three",
            ]
        )
        == 2
    )
    assert "--lora-layers must look like 0-20" in capsys.readouterr().err and not (tmp_path / "x").exists()


@pytest.mark.parametrize("bad", [{"lora_rank": 0}, {"kl_weight": -1.0}, {"epochs": 101}, {"checkpoint_every": 0}])
def test_bad_lora_settings_start_no_run(sqlite_db, bad):
    """Refused before a run row exists (the worker would only fail after its start-up)."""
    from sqlalchemy import func, select

    from core.orchestration.launcher import start_retrain
    from core.orchestration.retrain import RetrainParams
    from db.models import TrainRun

    with pytest.raises(UserError):
        start_retrain(sqlite_db, RetrainParams(kind="lora", **bad), None)
    with sqlite_db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(TrainRun)) == 0
