"""Parts of the serving API without a server: capture never fails a response, a probe for another
model is refused at start with one message, requests are checked parameter by parameter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.base.types import TokenTrace
from core.orchestration.serve.schema import ApiError, OutputFormat, parse_chat
from db.api_keys import KeyOwner

REPO = Path(__file__).resolve().parents[1]


def test_a_capture_that_fails_is_counted_and_logged_never_raised(caplog):
    from core.orchestration.serve.capture import Capture

    class Broken:
        def sessions(self):
            raise RuntimeError("database down")

    stored, failed = [], []
    capture = Capture(Broken(), lambda: stored.append(1), lambda: failed.append(1))  # type: ignore[arg-type]
    owner = KeyOwner(1, "k", 1, "ann", "all", "served", None)
    trace = TokenTrace([1], ["Hi"], [(0, 2)], [-0.1], [1.0], [0.2])
    future = capture.submit(
        owner, [{"role": "user", "content": "Q?"}], "Hi", trace, model_id="m", probe_version=1, extra={}
    )
    assert future.result(10) is None
    capture.close()
    assert failed == [1] and stored == []
    assert "could not capture a served answer" in caplog.text


def test_requests_are_checked_with_the_parameter_named():
    ok = {"model": "m", "messages": [{"role": "user", "content": "Hi?"}]}
    chat = parse_chat({**ok, "stop": "\n", "temperature": 0}, served_model="m", max_tokens_cap=10)
    assert chat.stop == ("\n",) and chat.decoding.greedy and chat.decoding.max_new_tokens == 10
    for body, param in [
        ({**ok, "max_completion_tokens": 11}, "max_completion_tokens"),
        ({**ok, "top_logprobs": 3}, "top_logprobs"),
        ({**ok, "stop": ["a"] * 5}, "stop"),
        ({**ok, "messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({**ok, "probelens": {"early_stop": {"kind": "word", "threshold": 0.5}}}, "probelens.early_stop.kind"),
        ({**ok, "probelens": {"early_stop": {"kind": "span", "threshold": 2}}}, "probelens.early_stop.threshold"),
    ]:
        with pytest.raises(ApiError) as caught:
            parse_chat(body, served_model="m", max_tokens_cap=10)
        assert caught.value.status == 400 and caught.value.param == param
    with pytest.raises(ApiError) as caught:
        parse_chat({**ok, "model": "other"}, served_model="m", max_tokens_cap=10)
    assert caught.value.status == 404 and caught.value.code == "model_not_found"


def test_response_format_is_read_into_what_the_engine_enforces():
    ok = {"model": "m", "messages": [{"role": "user", "content": "Hi?"}]}

    def output(value):
        return parse_chat({**ok, "response_format": value}, served_model="m", max_tokens_cap=10).output

    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert output(None) is None and output({"type": "text"}) is None
    assert output({"type": "json_object"}) == OutputFormat("json_object")
    spec = {"name": "a-b_1", "schema": schema, "strict": True}
    assert output({"type": "json_schema", "json_schema": spec}) == OutputFormat("json_schema", schema, "a-b_1")
    for value, param in [
        ("json", "response_format.type"),
        ({"type": "json_schema", "json_schema": {"schema": schema}}, "response_format.json_schema.name"),
        (
            {"type": "json_schema", "json_schema": {"name": "x" * 65, "schema": schema}},
            "response_format.json_schema.name",
        ),
        ({"type": "json_schema", "json_schema": {"name": "v", "schema": "{}"}}, "response_format.json_schema.schema"),
        ({"type": "json_schema", "json_schema": {"name": "v", "strict": "yes"}}, "response_format.json_schema.strict"),
    ]:
        with pytest.raises(ApiError) as caught:
            output(value)
        assert caught.value.status == 400 and caught.value.param == param


@pytest.mark.slow
def test_a_probe_for_another_model_is_refused_at_start(tiny_lm, tiny_tokenizer, tmp_path, monkeypatch):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from core.orchestration.registry import promote
    from db import open_database
    from tests.support.capitals import run_retrain, seed

    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'other.db'}",
        "PROBELENS_PROBES_DIR": str(tmp_path / "probes"),
        "PROBELENS_CACHE_DIR": str(tmp_path / "cache"),
        "PROBELENS_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    database = open_database(env["DATABASE_URL"])
    seed(database)
    run_retrain(database, tiny_lm)
    promote(database, 1, None)
    torch.manual_seed(1)
    other = tmp_path / "other-model"
    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        eos_token_id=tiny_tokenizer.eos_token_id,
        pad_token_id=tiny_tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(other)
    tiny_tokenizer.save_pretrained(other)
    done = subprocess.run(
        [sys.executable, "-m", "core", "serve", "--port", "1", "--model", str(other)],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "model" in lines[0]
