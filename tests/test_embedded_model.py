"""Integration: the embedded SmolLM2 for real — generate, train, evaluate, score, and
streaming scores equal teacher-forced scores of the same tokens."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from core.orchestration.cli import main

pytestmark = pytest.mark.integration

PROMPTS = [
    "What is the capital of France? Answer in one sentence.",
    "Name the capital city of Japan and one famous landmark there.",
    "Who was the first president of the United States?",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    repo = Path(__file__).resolve().parents[1]
    path = tmp_path_factory.mktemp("embedded")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROBELENS_CACHE_DIR", str(path / "cache"))
        mp.setenv("PROBELENS_MODEL_CACHE_DIR", str(repo / "data" / "cache" / "models"))
        mp.delenv("PROBELENS_MODEL", raising=False)
        yield path


def cli(*argv: str) -> None:
    assert main(["--quiet", *argv]) == 0


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_generate_train_evaluate_score_and_streaming_agreement(workdir, capsys):
    prompts = workdir / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS)))
    generated = workdir / "generated.jsonl"
    cli("generate", "--prompts", str(prompts), "--out", str(generated), "--max-new-tokens", "40")
    rows = read(generated)
    assert len(rows) == 3
    assert all(r["model"] == "embedded:SmolLM2-135M-Instruct" for r in rows)
    assert any("Paris" in r["conversation"][-1]["content"] for r in rows)  # greedy SmolLM2 knows this one

    # Label every capitalised word (a crude stand-in for entities): odd ones hallucinated.
    for row in rows:
        text = row["conversation"][-1]["content"]
        row["spans"] = [
            {"start": m.start(), "end": m.end(), "label": "Not Supported" if n % 2 else "Supported"}
            for n, m in enumerate(re.finditer(r"\b[A-Z][\w-]+", text))
        ]
    labelled = workdir / "labelled.jsonl"
    labelled.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    probe_dir = workdir / "probe"
    capsys.readouterr()
    cli("train", "--data", str(labelled), "--out", str(probe_dir), "--val-fraction", "0")
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["layer"] == 28  # floor(0.95 * 30)
    assert metrics["token"]["auc"] > 0.9  # it can at least fit its own training data
    assert set(metrics["baselines"]) == {"logprob", "entropy"}

    cli("evaluate", "--data", str(labelled), "--probe", str(probe_dir))
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["token"]["auc"] == pytest.approx(metrics["token"]["auc"], abs=1e-6)

    # Streaming scores (generate --probe) vs teacher-forced scores (score) of the same tokens.
    streamed = workdir / "streamed.jsonl"
    cli(
        "generate",
        "--prompts",
        str(prompts),
        "--out",
        str(streamed),
        "--max-new-tokens",
        "40",
        "--probe",
        str(probe_dir),
    )
    forced = workdir / "forced.jsonl"
    cli("score", "--data", str(streamed), "--probe", str(probe_dir), "--out", str(forced))
    for s_row, f_row in zip(read(streamed), read(forced)):
        assert s_row["tokens"]["ids"] == f_row["tokens"]["ids"]
        assert s_row["tokens"]["offsets"] == f_row["tokens"]["offsets"]
        np.testing.assert_allclose(f_row["tokens"]["scores"], s_row["tokens"]["scores"], atol=1e-4)
        np.testing.assert_allclose(f_row["tokens"]["logprobs"], s_row["tokens"]["logprobs"], atol=1e-3)
