"""Probes written in the paper's format (probe_head.bin + probe_config.json): built here with the
tiny model, imported from a folder, a zip and the CLI, equal to the same weights in our format,
and refused with one message (and nothing registered) when anything is off."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import torch

from core.base.errors import UserError
from core.orchestration.registry import import_paper_probe, load_version, upload_any
from core.probes.config import ProbeConfig
from core.probes.files import save_probe
from core.probes.linear import LinearProbe
from db.probes import list_probes


@pytest.fixture()
def probes_dir(isolated_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    return tmp_path / "probes"


def paper_folder(
    folder: Path, lm, *, layer: int | None = None, hidden: int | None = None, seed: int = 0, head: object | None = None
) -> tuple[Path, torch.nn.Linear]:
    """What the paper's code writes: torch.save(nn.Linear(H, 1).state_dict()) and its JSON config."""
    torch.manual_seed(seed)
    linear = torch.nn.Linear(hidden or lm.hidden_size, 1)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(head if head is not None else linear.state_dict(), folder / "probe_head.bin")
    (folder / "probe_config.json").write_text(
        json.dumps(
            {
                "layer_idx": lm.default_layer if layer is None else layer,
                "hidden_size": hidden or lm.hidden_size,
                "target_layer_name": f"model.layers.{lm.default_layer if layer is None else layer}",
            }
        )
    )
    return folder, linear


def zipped(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in folder.iterdir():
            archive.write(path, f"{folder.name}/{path.name}")
    return buffer.getvalue()


def _count(database) -> int:
    with database.sessions() as session:
        return len(list_probes(session))


def test_a_paper_probe_scores_exactly_like_the_same_weights_in_our_format(sqlite_db, tiny_lm, probes_dir, tmp_path):
    from core.engine.scoring import score_conversation

    folder, linear = paper_folder(tmp_path / "paper", tiny_lm)
    version = import_paper_probe(sqlite_db, tiny_lm, folder, None)
    ours = tmp_path / "ours"
    save_probe(
        ours,
        LinearProbe.from_weights(linear.weight.detach().reshape(-1), linear.bias.detach()),
        ProbeConfig(
            model_id=tiny_lm.model_id,
            tokenizer_hash=tiny_lm.tokenizer_hash,
            layer=tiny_lm.default_layer,
            hidden_size=tiny_lm.hidden_size,
        ),
    )
    from core.probes.archive import pack_probe

    our_version = upload_any(sqlite_db, tiny_lm, pack_probe(ours), None)
    paper, own = load_version(sqlite_db, tiny_lm, version), load_version(sqlite_db, tiny_lm, our_version)
    assert paper.config.source == "paper" and own.config.source is None
    assert paper.layer == own.layer == tiny_lm.default_layer
    scored = score_conversation(
        tiny_lm,
        [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris, on the Seine."}],
        [paper.layer],
    )
    hidden = scored.hidden[paper.layer]
    assert torch.equal(paper.head.predict(hidden), own.head.predict(hidden))
    with torch.no_grad():
        expected = torch.sigmoid(linear(hidden.clone()).squeeze(-1))
    assert torch.allclose(paper.head.predict(hidden), expected, atol=1e-6)
    with sqlite_db.sessions() as session:
        row = next(p for p in list_probes(session) if p.version == version)
        assert not row.active  # imported as a new, inactive version


def test_a_zip_upload_and_the_cli_import_the_paper_format(
    sqlite_db, tiny_lm, tiny_model_dir, probes_dir, tmp_path, monkeypatch, capsys
):
    from core.orchestration.cli import main

    folder, _ = paper_folder(tmp_path / "paper-probe", tiny_lm, seed=1)
    assert upload_any(sqlite_db, tiny_lm, zipped(folder), None) == 1  # the Probes page's upload path
    monkeypatch.setenv("DATABASE_URL", sqlite_db.engine.url.render_as_string(hide_password=False))
    code = main(["probes", "--model", str(tiny_model_dir), "import-paper", str(folder)])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out) == {"version": 2, "source": "paper"}
    (tmp_path / "paper.zip").write_bytes(zipped(folder))
    assert main(["probes", "--model", str(tiny_model_dir), "import-paper", str(tmp_path / "paper.zip")]) == 0
    assert _count(sqlite_db) == 3
    assert main(["probes", "--model", str(tiny_model_dir), "import-paper", str(tmp_path / "nowhere")]) == 2
    assert "paper probe folder not found" in capsys.readouterr().err and _count(sqlite_db) == 3


def test_layer_idx_minus_one_imports_as_the_last_block(sqlite_db, tiny_lm, probes_dir, tmp_path):
    """The paper's loader takes Python's -1 for the last layer: stored as that block's number."""
    from core.engine.scoring import score_conversation
    from core.orchestration.probe_cache import database_version_dir

    last = tiny_lm.num_layers - 1
    folder, linear = paper_folder(tmp_path / "paper", tiny_lm, layer=-1)
    version = import_paper_probe(sqlite_db, tiny_lm, folder, None)
    loaded = load_version(sqlite_db, tiny_lm, version)
    assert loaded.layer == loaded.config.layer == last
    stored = json.loads((database_version_dir(sqlite_db, version) / "config.json").read_text())
    assert stored["layer"] == last and stored["train_config"]["layer_idx"] == -1
    conversation = [{"role": "user", "content": "Capital of Peru?"}, {"role": "assistant", "content": "Lima."}]
    hidden = score_conversation(tiny_lm, conversation, [last]).hidden[last]
    with torch.no_grad():
        expected = torch.sigmoid(linear(hidden.clone()).squeeze(-1))
    assert torch.allclose(loaded.head.predict(hidden), expected, atol=1e-6)


class Boom:
    """Pickled by torch.save; `weights_only=True` must refuse to build it."""

    def __reduce__(self):
        return (print, ("code ran",))


@pytest.mark.parametrize(
    "case, message",
    [
        ("other hidden size", "it reads vectors of size 7 but model"),
        ("layer out of range", "layer 99 is out of range"),
        ("negative layer", "of the negative values only -1"),
        ("wrong shape", "must hold 'weight' [1, 32] and 'bias' [1]"),
        ("not finite", "must be finite floating-point numbers"),
        ("a pickled object", "is not a readable PyTorch state dict"),
        ("no config", "probe_config.json missing"),
        ("bad config", "needs an integer layer_idx"),
        ("lora adapter", "must be in adapter_model.safetensors"),
        ("huge lora rank", "LoRA rank must be between 1 and 256"),
        ("infinite lora alpha", "lora_alpha must be a finite number"),
        ("unknown adapter key", "holds an unknown key"),
    ],
)
def test_anything_off_is_refused_with_one_message_and_nothing_registered(
    sqlite_db, tiny_lm, probes_dir, tmp_path, case, message, capfd
):
    folder = tmp_path / "bad"
    if case == "other hidden size":
        paper_folder(folder, tiny_lm, hidden=7)
    elif case == "layer out of range":
        paper_folder(folder, tiny_lm, layer=99)
    elif case == "negative layer":
        paper_folder(folder, tiny_lm, layer=-2)
    elif case == "wrong shape":
        paper_folder(folder, tiny_lm, head={"weight": torch.zeros(2, 32), "bias": torch.zeros(1)})
    elif case == "not finite":
        paper_folder(folder, tiny_lm, head={"weight": torch.full((1, 32), float("nan")), "bias": torch.zeros(1)})
    elif case == "a pickled object":
        paper_folder(folder, tiny_lm, head={"weight": Boom()})
    elif case == "no config":
        paper_folder(folder, tiny_lm)
        (folder / "probe_config.json").unlink()
    elif case == "bad config":
        paper_folder(folder, tiny_lm)
        (folder / "probe_config.json").write_text('{"layer_idx": "3", "hidden_size": 32}')
    elif case == "lora adapter":
        paper_folder(folder, tiny_lm)
        (folder / "adapter_config.json").write_text('{"r": 16}')
    else:  # issue #22: the adapter config is checked against a strict schema before PEFT sees it
        from safetensors.torch import save_file

        paper_folder(folder, tiny_lm)
        save_file({}, str(folder / "adapter_model.safetensors"))
        extra = {
            "huge lora rank": '"r": 4194304',
            "infinite lora alpha": '"lora_alpha": 1e999',
            "unknown adapter key": '"surprise": 1',
        }[case]
        text = '{"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], ' + extra + "}"
        (folder / "adapter_config.json").write_text(text.replace('"r": 4, ', "") if case == "huge lora rank" else text)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        import_paper_probe(sqlite_db, tiny_lm, folder, None)
    assert "code ran" not in capfd.readouterr().out
    assert _count(sqlite_db) == 0 and (not probes_dir.exists() or not any(probes_dir.iterdir()))


def test_a_paper_lora_probe_imports_with_its_peft_adapter_and_scores_through_it(
    sqlite_db, tiny_lm, probes_dir, tmp_path
):
    import copy

    from peft import LoraConfig, get_peft_model

    folder, linear = paper_folder(tmp_path / "paper-lora", tiny_lm, layer=3)
    torch.manual_seed(5)
    adapted = get_peft_model(
        copy.deepcopy(tiny_lm.model),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], layers_to_transform=[0, 1, 2, 3]),
    )
    with torch.no_grad():
        for name, weight in adapted.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 0.5)  # PEFT starts B at zero: give the adapter an effect
    adapted.save_pretrained(str(folder))  # adapter_config.json + adapter_model.safetensors, as the paper's code
    version = import_paper_probe(sqlite_db, tiny_lm, folder, None)
    loaded = load_version(sqlite_db, tiny_lm, version)
    assert loaded.kind == "lora" and loaded.config.source == "paper" and loaded.model is not None
    assert loaded.config.lora == {"rank": 4, "alpha": 8, "dropout": 0.0, "first_layer": 0, "last_layer": 3}
    from core.probes.lora import lora_hidden

    conversation = [{"role": "user", "content": "Capital of Peru?"}, {"role": "assistant", "content": "Lima."}]
    adapted.eval()
    expected = loaded.head.predict(lora_hidden(tiny_lm, adapted, conversation, 3))
    assert torch.allclose(loaded.head.predict(loaded.hidden(tiny_lm, conversation)), expected, atol=1e-6)
