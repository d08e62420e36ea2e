"""`python -m core` end to end on a tiny random model: outputs and every bad-input path."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.orchestration.cli import main

REPO = Path(__file__).resolve().parents[1]
PROMPTS = [
    "Who founded Lviv?",
    "Tell me about Marie Curie.",
    "What is the capital of France?",
    "Name a city in Japan.",
    "Describe Zürich 😀.",
    "Who wrote Middlemarch?",
]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def label_words(text: str) -> list[dict]:
    """Every word becomes a span; every third one hallucinated, the rest supported."""
    spans = []
    for n, m in enumerate(re.finditer(r"\S+", text)):
        spans.append({"start": m.start(), "end": m.end(), "label": "Not Supported" if n % 3 == 0 else "Supported"})
    return spans


@pytest.fixture(scope="module")
def generated(tmp_path_factory, tiny_model_dir):
    """Generated once per module (the slow part); tests copy what they change."""
    tmp_path = tmp_path_factory.mktemp("generated")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS)))
    out = tmp_path / "gen.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROBELENS_CACHE_DIR", str(tmp_path / "cache"))
        code = main(
            [
                "--quiet",
                "generate",
                "--prompts",
                str(prompts),
                "--out",
                str(out),
                "--model",
                str(tiny_model_dir),
                "--max-new-tokens",
                "24",
                "--temperature",
                "1.0",
                "--seed",
                "1",
            ]
        )
    assert code == 0
    return out


@pytest.fixture()
def labelled(tmp_path, generated, isolated_cache):
    rows = [json.loads(line) for line in generated.read_text().splitlines()]
    for row in rows:
        row["spans"] = label_words(row["conversation"][-1]["content"])
        row.pop("annotations", None)
    path = tmp_path / "labelled.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def test_generate_batch_size_changes_nothing_but_speed(tmp_path, generated, tiny_model_dir, capsys, isolated_cache):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS)))
    outs = []
    for size in ("1", "3"):
        out = tmp_path / f"gen-{size}.jsonl"
        code, _, _ = run(
            capsys,
            "generate",
            "--prompts",
            str(prompts),
            "--out",
            str(out),
            "--model",
            str(tiny_model_dir),
            "--max-new-tokens",
            "24",
            "--temperature",
            "1.0",
            "--seed",
            "1",
            "--batch-size",
            size,
        )
        assert code == 0
        outs.append(out.read_text())
    # same samples whatever the batch size (per-prompt seeds), in the prompts' order; floats to rounding
    for text in outs:
        for ours, reference in zip(text.splitlines(), generated.read_text().splitlines(), strict=True):
            ours, reference = json.loads(ours), json.loads(reference)
            assert (ours["id"], ours["conversation"]) == (reference["id"], reference["conversation"])
            for field in ("ids", "texts", "offsets"):
                assert ours["tokens"][field] == reference["tokens"][field]
            assert ours["tokens"]["logprobs"] == pytest.approx(reference["tokens"]["logprobs"], abs=1e-4)
    code, _, err = run(
        capsys,
        "generate",
        "--prompts",
        str(prompts),
        "--out",
        str(tmp_path / "x.jsonl"),
        "--model",
        str(tiny_model_dir),
        "--batch-size",
        "0",
    )
    assert code == 2 and "--batch-size must be between 1 and 64" in err and not (tmp_path / "x.jsonl").exists()


def test_generate_writes_interchange_with_token_data(generated):
    rows = [json.loads(line) for line in generated.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"p{i}" for i in range(len(PROMPTS))]
    for row in rows:
        assert row["conversation"][0] == {"role": "user", "content": PROMPTS[int(row["id"][1:])]}
        assert row["conversation"][-1]["role"] == "assistant"
        tokens = row["tokens"]
        assert len(tokens["ids"]) == len(tokens["offsets"]) == len(tokens["logprobs"]) == len(tokens["entropies"])
        assert 1 <= len(tokens["ids"]) <= 24
        assert "".join(tokens["texts"]) == row["conversation"][-1]["content"]


def test_train_evaluate_score_and_layers(tmp_path, labelled, tiny_model_dir, capsys):
    probe_dir = tmp_path / "probe"
    code, out, err = run(
        capsys,
        "train",
        "--data",
        str(labelled),
        "--out",
        str(probe_dir),
        "--model",
        str(tiny_model_dir),
        "--val-fraction",
        "0.3",
    )
    assert code == 0, err
    metrics = json.loads(out)
    for level in ("token", "span_max"):
        assert {"auc", "recall_at_fpr_0.1"} <= set(metrics[level])
    for baseline in ("logprob", "entropy"):
        assert {"auc", "recall_at_fpr_0.1"} <= set(metrics["baselines"][baseline])
    config = json.loads((probe_dir / "config.json").read_text())
    assert config["model_id"] == str(tiny_model_dir) and config["layer"] == 3 and config["hidden_size"] == 32
    assert (probe_dir / "probe.safetensors").exists()

    code, out, err = run(capsys, "evaluate", "--data", str(labelled), "--probe", str(probe_dir))
    assert code == 0, err
    evaluated = json.loads(out)
    assert evaluated["counts"]["generations"] == len(PROMPTS)
    assert 0 <= evaluated["token"]["auc"] <= 1

    scored = tmp_path / "scored.jsonl"
    code, _, err = run(capsys, "score", "--data", str(labelled), "--probe", str(probe_dir), "--out", str(scored))
    assert code == 0, err
    rows = [json.loads(line) for line in scored.read_text().splitlines()]
    assert len(rows) == len(PROMPTS)
    for row in rows:
        scores = row["tokens"]["scores"]
        assert len(scores) == len(row["tokens"]["ids"]) and all(0 <= s <= 1 for s in scores)

    code, out, err = run(capsys, "layers", "--data", str(labelled), "--model", str(tiny_model_dir))
    assert code == 0, err
    sweep = json.loads(out)
    assert [r["layer"] for r in sweep["layers"]] == [0, 1, 2, 3]
    assert sweep["best_layer"] in {0, 1, 2, 3}


def test_second_training_reuses_the_activation_cache(tmp_path, labelled, tiny_model_dir, isolated_cache, capsys):
    args = ("train", "--data", str(labelled), "--model", str(tiny_model_dir), "--val-fraction", "0.3")
    assert run(capsys, *args, "--out", str(tmp_path / "a"))[0] == 0
    cached = sorted(p.name for p in isolated_cache.rglob("*.safetensors"))
    assert len(cached) == len(PROMPTS)
    mtimes = {p: p.stat().st_mtime_ns for p in isolated_cache.rglob("*.safetensors")}
    assert run(capsys, *args, "--out", str(tmp_path / "b"))[0] == 0
    assert {p: p.stat().st_mtime_ns for p in isolated_cache.rglob("*.safetensors")} == mtimes
    # Same data, same seed, warm cache: the identical probe.
    assert (tmp_path / "a" / "probe.safetensors").read_bytes() == (tmp_path / "b" / "probe.safetensors").read_bytes()


def one_line_error(capsys, *argv: str) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_missing_file(tmp_path, capsys):
    line = one_line_error(capsys, "train", "--data", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "p"))
    assert "no such file" in line
    assert not (tmp_path / "p").exists()


def test_bad_json_names_the_line(tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    good = {"conversation": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a b"}]}
    data.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n{not json\n")
    line = one_line_error(capsys, "evaluate", "--data", str(data), "--probe", str(tmp_path))
    assert "line 3" in line and "JSON" in line


def test_empty_data(tmp_path, capsys):
    data = tmp_path / "empty.jsonl"
    data.write_text("\n\n")
    assert "no generations" in one_line_error(capsys, "train", "--data", str(data), "--out", str(tmp_path / "p"))


def test_no_positive_labels(tmp_path, generated, tiny_model_dir, capsys):
    rows = [json.loads(line) for line in generated.read_text().splitlines()]
    for row in rows:
        row["spans"] = [dict(s, label="Supported") for s in label_words(row["conversation"][-1]["content"])]
    data = tmp_path / "neg.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    line = one_line_error(
        capsys, "train", "--data", str(data), "--out", str(tmp_path / "p"), "--model", str(tiny_model_dir)
    )
    assert "no hallucinated" in line
    assert not (tmp_path / "p").exists()


def test_unknown_model(tmp_path, labelled, capsys):
    line = one_line_error(
        capsys, "train", "--data", str(labelled), "--out", str(tmp_path / "p"), "--model", "nobody/nothing-here"
    )
    assert "unknown model 'nobody/nothing-here'" in line


def test_probe_model_mismatch(tmp_path, labelled, tiny_model_dir, tiny_tokenizer, capsys):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    probe_dir = tmp_path / "probe"
    assert (
        run(capsys, "train", "--data", str(labelled), "--out", str(probe_dir), "--model", str(tiny_model_dir))[0] == 0
    )
    other = tmp_path / "other-model"
    torch.manual_seed(1)
    LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tiny_tokenizer),
            hidden_size=48,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    ).save_pretrained(other)
    tiny_tokenizer.save_pretrained(other)
    capsys.readouterr()
    line = one_line_error(capsys, "evaluate", "--data", str(labelled), "--probe", str(probe_dir), "--model", str(other))
    assert str(tiny_model_dir) in line and str(other) in line and "48" in line and "32" in line


def test_unknown_label_is_reported(tmp_path, capsys):
    data = tmp_path / "l.jsonl"
    row = {
        "conversation": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Paris"}],
        "annotations": [{"span": "Paris", "index": 0, "label": "Maybe"}],
    }
    data.write_text(json.dumps(row) + "\n")
    assert "'Maybe'" in one_line_error(capsys, "train", "--data", str(data), "--out", str(tmp_path / "p"))


def test_module_entry_point_exit_code(tmp_path):
    """The real `python -m core` process: exit 2 and one stderr line."""
    proc = subprocess.run(
        [sys.executable, "-m", "core", "evaluate", "--data", str(tmp_path / "x.jsonl"), "--probe", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no such file" in proc.stderr
