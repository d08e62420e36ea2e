"""Parts of the serving API without a server: capture never fails a response, a probe for another
model is refused at start with one message, requests are checked parameter by parameter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.base.errors import UserError
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
    # `--ray` checks the same before it deploys anything.
    on_ray = subprocess.run(
        [sys.executable, "-m", "core", "serve", "--ray", "--port", "1", "--model", str(other)],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert on_ray.returncode == 2
    assert [line for line in on_ray.stderr.splitlines() if line.startswith("error:")] == lines
    assert "Started a local Ray instance" not in on_ray.stderr


def test_ray_replicas_one_per_gpu_else_the_cpu_replicas_asked_for():
    from core.orchestration.ray_cluster import ClusterShape
    from core.orchestration.serve.ray_serve import replica_plan

    assert replica_plan(ClusterShape(gpus=3, node_cpus=8, nodes=2), 5).replicas == 3
    assert replica_plan(ClusterShape(gpus=3, node_cpus=8, nodes=2), None).resources == {"num_gpus": 1, "num_cpus": 1}
    cpu = replica_plan(ClusterShape(gpus=0, node_cpus=2, nodes=1), None)
    assert (cpu.replicas, cpu.resources) == (2, {"num_cpus": 1})
    assert replica_plan(ClusterShape(gpus=0, node_cpus=2, nodes=1), 4).replicas == 4
    with pytest.raises(UserError, match="--replicas"):
        replica_plan(ClusterShape(gpus=0, node_cpus=2, nodes=1), 0)


@pytest.fixture()
def live_service(tiny_lm, tmp_path, monkeypatch):
    """The real app on uvicorn in this process, following the active probe every 0.1 s, over a
    real SQLite file whose active version v1 is a linear probe for the tiny model."""
    from tests.support.serving import live_service

    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    with live_service(tiny_lm, tmp_path) as service:
        yield service.url, service.key, service.database, service.holder, service.capture_key


@pytest.mark.slow
def test_a_version_for_another_model_promoted_mid_run_is_logged_and_never_used(live_service, tiny_lm, caplog):
    import time

    import httpx
    import openai

    from core.orchestration.registry import promote
    from tests.support.probe_versions import register_linear_probe

    url, key, database, holder, _capture_key = live_service
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)

    def served_version(stream: bool = False) -> int | None:
        args = {"model": tiny_lm.model_id, "messages": [{"role": "user", "content": "Hi?"}], "max_tokens": 4}
        if not stream:
            reply = client.chat.completions.create(**args, logprobs=True)
            assert all(t.model_extra["risk"] is not None for t in reply.choices[0].logprobs.content)
            return reply.model_extra["probelens"]["probe_version"]
        *_chunks, last = list(client.chat.completions.create(**args, stream=True))
        return last.model_extra["probelens"]["probe_version"]

    assert served_version() == 1
    other = register_linear_probe(
        database, tiny_lm, activate=False, seed=1, model_id="someone/another-model", hidden_size=tiny_lm.hidden_size * 2
    )
    promote(database, other, None)
    refused = f"probe v{other} is active but cannot score this model, keeping v1"
    deadline = time.time() + 10
    while refused not in caplog.text:
        assert time.time() < deadline, "the service did not notice the promote"
        time.sleep(0.05)
    time.sleep(0.3)  # a few more refreshes: still refused, and logged once
    assert caplog.text.count(refused) == 1
    assert served_version() == 1 and served_version(stream=True) == 1
    assert httpx.get(url + "/health").json()["probe_version"] == 1
    assert client.models.list().data[0].model_extra["probelens"]["probe_version"] == 1
    assert holder.current()[1] == 1
    # A fitting version promoted after it is picked up: the refusal did not stop the following.
    fitting = register_linear_probe(database, tiny_lm, activate=True, seed=2)
    deadline = time.time() + 10
    while served_version() != fitting:
        assert time.time() < deadline, "the next fitting version was not picked up"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_capture_the_database_refuses_is_counted_and_the_answer_still_served(live_service, tiny_lm, caplog):
    import time

    import httpx
    import openai
    from sqlalchemy import text

    url, _key, database, _holder, capture_key = live_service
    with database.engine.begin() as connection:
        connection.execute(text("DROP TABLE generations"))  # every capture write now fails for real
    client = openai.OpenAI(base_url=url + "/v1", api_key=capture_key, max_retries=0)
    args = {"model": tiny_lm.model_id, "messages": [{"role": "user", "content": "Store me?"}], "max_tokens": 4}
    whole = client.chat.completions.create(**args)
    assert whole.choices[0].finish_reason in ("stop", "length")
    streamed = list(client.chat.completions.create(**args, stream=True))
    assert streamed[-1].choices[0].finish_reason in ("stop", "length")

    def errors() -> float:
        lines = httpx.get(url + "/metrics").text.splitlines()
        return sum(float(line.split()[-1]) for line in lines if line.startswith("probelens_capture_errors_total"))

    deadline = time.time() + 10
    while errors() < 2:
        assert time.time() < deadline, "the failed captures were not counted"
        time.sleep(0.05)
    assert caplog.text.count("could not capture a served answer") == 2
    assert "Store me?" not in caplog.text
