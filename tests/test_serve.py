"""`python -m core serve` as a real process, driven by the official `openai` client and raw httpx.

One server for the module (the tiny model, a probe retrained on the capitals answers in a real
SQLite file); each test uses its own prompts so captured answers do not collide.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.serving import start_serve, stop_serve

pytestmark = pytest.mark.slow


class Server:
    def __init__(self, url: str, model: str, keys: dict[str, str], database, lm, proc, log: Path) -> None:
        self.url, self.model, self.keys, self.database, self.lm, self.proc = url, model, keys, database, lm, proc
        self.log = log  # the service's stderr

    def client(self, key: str = "plain", **kwargs) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.keys.get(key, key), max_retries=0, **kwargs)

    def metric(self, name: str) -> float:
        text = httpx.get(self.url + "/metrics").text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.split()[-1])
        return total


@pytest.fixture(scope="module")
def server(tiny_lm, tiny_model_dir, tmp_path_factory):
    from core.orchestration.registry import promote
    from db import open_database
    from db.api_keys import create_key
    from db.users import add_user
    from tests.support.capitals import run_retrain, seed

    root = tmp_path_factory.mktemp("serve")
    env = {
        "DATABASE_URL": f"sqlite:///{root / 'serve.db'}",
        "PROBELENS_PROBES_DIR": str(root / "probes"),
        "PROBELENS_CACHE_DIR": str(root / "cache"),
        "PROBELENS_DEVICE": "cpu",
        "PROBELENS_SERVE_MAX_TOKENS": "48",
        "PROBELENS_SERVE_MAX_PROMPT_TOKENS": "400",
        "PROBELENS_SERVE_MAX_IN_FLIGHT": "2",
        "PROBELENS_SERVE_MAX_BODY_KB": "16",
        "PROBELENS_SERVE_PROBE_REFRESH_SECONDS": "0.3",
        "OMP_NUM_THREADS": "1",
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        database = open_database(env["DATABASE_URL"])
        seed(database)
        run_retrain(database, tiny_lm)
        promote(database, 1, None)
        keys = {}
        with database.sessions() as session, session.begin():
            ann = add_user(session, "ann", "annotator-password", "annotator")
            keys["plain"] = create_key(session, ann, "plain", actor=None)[1]
            keys["capture"] = create_key(session, ann, "capture", actor=None, capture="all", capture_dataset="served")[
                1
            ]
            keys["flagged"] = create_key(
                session,
                ann,
                "flagged",
                actor=None,
                capture="flagged",
                capture_dataset="flagged",
                capture_threshold=1.0,
            )[1]
            keys["flagged_low"] = create_key(
                session,
                ann,
                "flagged-low",
                actor=None,
                capture="flagged",
                capture_dataset="flagged-low",
                capture_threshold=0.0,
            )[1]
            keys["busy"] = create_key(session, ann, "busy", actor=None)[1]
        log = root / "serve.log"
        url, proc = start_serve(env, log, "--model", str(tiny_model_dir))
        yield Server(url, tiny_lm.model_id, keys, database, tiny_lm, proc, log)
        stop_serve(proc)


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def served_rows(database, dataset: str) -> list:
    from sqlalchemy import select

    from db.models import Dataset, Generation

    with database.sessions() as session:
        return list(
            session.scalars(
                select(Generation).join(Dataset, Dataset.id == Generation.dataset_id).where(Dataset.name == dataset)
            )
        )


def test_health_models_and_metrics(server):
    assert httpx.get(server.url + "/health").json()["probe_version"] == 1
    models = server.client().models.list()
    assert [m.id for m in models.data] == [server.model]
    assert models.data[0].model_extra["probelens"]["probe_version"] == 1
    assert "probelens_time_to_first_token_seconds" in httpx.get(server.url + "/metrics").text


def test_non_streaming_answer_follows_the_openai_schema_with_risks(server):
    reply = server.client().chat.completions.create(
        model=server.model,
        messages=ask("What is the capital of France?"),
        max_tokens=12,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
    )
    choice = reply.choices[0]
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert choice.finish_reason in ("stop", "length") and choice.message.role == "assistant"
    content = choice.logprobs.content
    assert "".join(t.token for t in content) == choice.message.content
    assert reply.usage.completion_tokens == len(content)
    assert all(len(t.top_logprobs) == 2 for t in content)
    risks = [t.model_extra["risk"] for t in content]
    assert all(0.0 <= r <= 1.0 for r in risks)
    extension = reply.model_extra["probelens"]
    assert extension["probe_version"] == 1 and extension["risks"] == risks
    assert extension["max_risk"] == pytest.approx(max(risks))


def test_streamed_tokens_and_risks_equal_teacher_forced_scoring(server):
    from core.engine.scoring import score_conversation
    from core.orchestration.registry import load_version
    from db.generations import trace_of
    from db.predictions import scores_for

    messages = ask("Tell me about Peru (stream).")
    stream = server.client("capture").chat.completions.create(
        model=server.model,
        messages=messages,
        max_tokens=20,
        temperature=0.9,
        seed=7,
        stream=True,
        logprobs=True,
        stream_options={"include_usage": True},
    )
    texts, risks, finish, usage = [], [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.logprobs is not None:
                texts += [t.token for t in choice.logprobs.content]
                risks += [t.model_extra["risk"] for t in choice.logprobs.content]
            finish = choice.finish_reason or finish
    assert finish in ("stop", "length") and usage.completion_tokens == len(risks) > 0
    # The same seed gives the same answer, streamed or not.
    again = server.client().chat.completions.create(
        model=server.model, messages=messages, max_tokens=20, temperature=0.9, seed=7
    )
    assert again.choices[0].message.content == "".join(texts)
    # Captured (key "capture"): the stored token ids, teacher forced, score as streamed.
    deadline = time.time() + 20
    while not served_rows(server.database, "served") and time.time() < deadline:
        time.sleep(0.1)
    [row] = [
        r for r in served_rows(server.database, "served") if r.conversation[0]["content"] == messages[0]["content"]
    ]
    assert row.source == "served"
    trace = trace_of(row)
    probe = load_version(server.database, server.lm, 1)
    forced = score_conversation(server.lm, row.conversation, [probe.layer], trace.token_ids)
    expected = [float(x) for x in probe.predict(forced.hidden[probe.layer])]
    assert expected == pytest.approx(risks, abs=1e-4)
    with server.database.sessions() as session:
        assert scores_for(session, 1, row.id) == pytest.approx(risks, abs=1e-4)


def test_seed_reproducibility_and_stop_strings(server):
    client = server.client()
    messages = ask("Name a city in Japan.")
    first = client.chat.completions.create(model=server.model, messages=messages, max_tokens=30, seed=3)
    second = client.chat.completions.create(model=server.model, messages=messages, max_tokens=30, seed=3)
    text = first.choices[0].message.content
    assert second.choices[0].message.content == text and len(text) > 6
    stop = text[3:6]
    cut = client.chat.completions.create(model=server.model, messages=messages, max_tokens=30, seed=3, stop=[stop])
    assert cut.choices[0].message.content == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    assert cut.model_extra["probelens"]["stopped_by"] == "stop_string"
    streamed = client.chat.completions.create(
        model=server.model, messages=messages, max_tokens=30, seed=3, stop=stop, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == text[: text.index(stop)]


def test_early_stop_by_risk(server):
    reply = server.client().chat.completions.create(
        model=server.model,
        messages=ask("Which region is Chile in?"),
        max_tokens=30,
        temperature=0,
        extra_body={"probelens": {"early_stop": {"kind": "token", "threshold": 0.0001}}},
    )
    assert reply.choices[0].finish_reason == "content_filter"
    assert reply.usage.completion_tokens == 1
    early = reply.model_extra["probelens"]["early_stop"]
    assert early["kind"] == "token" and "early-stop threshold" in early["note"]


def test_bad_keys_get_401_in_openai_shape(server):
    with pytest.raises(openai.AuthenticationError) as caught:
        server.client("pl-not-a-key").chat.completions.create(model=server.model, messages=ask("Hi?"))
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "invalid_api_key"
    raw = httpx.post(server.url + "/v1/chat/completions", json={"model": server.model, "messages": ask("Hi?")})
    assert raw.status_code == 401 and set(raw.json()["error"]) == {"message", "type", "param", "code"}


def test_over_limit_requests_are_refused_clearly(server):
    client = server.client()
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=server.model, messages=ask("Hi?"), max_tokens=49)
    assert caught.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=server.model, messages=ask("word " * 500))
    assert caught.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=server.model, messages=ask("Hi?"), n=2)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=ask("Hi?"))
    big = httpx.post(
        server.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {server.keys['plain']}"},
        json={"model": server.model, "messages": ask("x" * 20_000)},
    )
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"


def _open_stream(server, key: str, prompt: str, max_tokens: int = 48):
    client = httpx.Client(timeout=30)
    response = client.send(
        client.build_request(
            "POST",
            server.url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {server.keys[key]}"},
            json={"model": server.model, "messages": ask(prompt), "stream": True, "max_tokens": max_tokens},
        ),
        stream=True,
    )
    return client, response


def test_in_flight_limit_429_and_a_disconnect_frees_the_slot(server):
    from concurrent.futures import ThreadPoolExecutor

    held = [_open_stream(server, "busy", f"Hold {i}") for i in range(2)]
    for _client, response in held:
        assert response.status_code == 200
        next(response.iter_lines())

    def post(n: int) -> httpx.Response:
        return httpx.post(
            server.url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {server.keys['busy']}"},
            json={"model": server.model, "messages": ask(f"Burst {n}?"), "max_tokens": 48},
            timeout=30,
        )

    with ThreadPoolExecutor(8) as pool:
        burst = list(pool.map(post, range(8)))
    refused = [r for r in burst if r.status_code == 429]
    assert refused and all(r.status_code in (200, 429) for r in burst)
    assert refused[0].headers["Retry-After"] == "1"
    assert refused[0].json()["error"]["type"] == "rate_limit_exceeded"
    for client, response in held:  # the clients go away mid-stream
        response.close()
        client.close()
    deadline = time.time() + 10
    while server.metric("probelens_requests_in_flight") > 0 and time.time() < deadline:
        time.sleep(0.05)
    assert server.metric("probelens_requests_in_flight") == 0
    assert server.client("busy").chat.completions.create(model=server.model, messages=ask("After?"), max_tokens=3)


def test_raw_sse_lines(server):
    client, response = _open_stream(server, "plain", "Raw lines please.", max_tokens=8)
    lines = list(response.iter_lines())
    client.close()
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line for line in lines if line]
    assert all(line.startswith("data: ") for line in events)
    assert lines[1::2] == [""] * (len(lines) // 2)  # every event ends with a blank line
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert chunks[-1]["probelens"]["probe_version"] == 1


def test_promote_during_a_stream_and_capture_off(server):
    from core.orchestration.registry import promote
    from tests.support.capitals import run_retrain

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROBELENS_PROBES_DIR", str(Path(server.database.engine.url.database).parent / "probes"))
        run_retrain(server.database, server.lm, epochs=2, seed=1)
    before = len(served_rows(server.database, "flagged"))
    stream = server.client("flagged").chat.completions.create(
        model=server.model, messages=ask("Promote while I stream."), max_tokens=30, stream=True
    )
    first = next(iter(stream))
    assert first.model_extra["probelens"]["probe_version"] == 1
    promote(server.database, 2, None)
    time.sleep(1.0)  # the service re-reads the active version every 0.3 s here
    *_rest, last = list(stream)
    assert last.model_extra["probelens"]["probe_version"] == 1  # the stream keeps its version
    reply = server.client().chat.completions.create(model=server.model, messages=ask("And now?"), max_tokens=3)
    assert reply.model_extra["probelens"]["probe_version"] == 2
    time.sleep(0.5)
    assert len(served_rows(server.database, "flagged")) == before  # threshold 1.0: nothing flagged
    assert not any(r.conversation[0]["content"] == "And now?" for r in served_rows(server.database, "served"))
    promote(server.database, 1, None)
    deadline = time.monotonic() + 10  # the tests after this one expect v1 again: wait until it serves
    while time.monotonic() < deadline:
        back = server.client().chat.completions.create(model=server.model, messages=ask("Back?"), max_tokens=1)
        if back.model_extra["probelens"]["probe_version"] == 1:
            break
        time.sleep(0.1)
    assert back.model_extra["probelens"]["probe_version"] == 1


def test_spans_are_the_runs_over_the_threshold_in_code_points(server):
    from core.text.tokens import runs_over

    args = {
        "model": server.model,
        "messages": ask("Describe Zürich 😀 (spans)."),
        "max_tokens": 24,
        "temperature": 0,
        "logprobs": True,
    }
    client = server.client()
    risks = [t.model_extra["risk"] for t in client.chat.completions.create(**args).choices[0].logprobs.content]
    threshold = sorted(risks)[len(risks) // 2]  # the median: some tokens over it, some not
    reply = client.chat.completions.create(**args, extra_body={"probelens": {"threshold": threshold}})
    content = reply.choices[0].message.content
    tokens = [t.token for t in reply.choices[0].logprobs.content]
    assert [t.model_extra["risk"] for t in reply.choices[0].logprobs.content] == risks
    extension = reply.model_extra["probelens"]
    assert extension["threshold"] == threshold and extension["max_risk"] == pytest.approx(max(risks))
    spans = extension["spans"]
    assert [tuple(s["tokens"]) for s in spans] == runs_over(risks, threshold) != []
    for span in spans:
        first, last = span["tokens"]
        assert span["start"] == len("".join(tokens[:first])) and span["end"] == len("".join(tokens[:last]))
        assert span["text"] == content[span["start"] : span["end"]] == "".join(tokens[first:last])
        assert span["max_risk"] == pytest.approx(max(risks[first:last]))
        assert span["mean_risk"] == pytest.approx(sum(risks[first:last]) / (last - first))
    *_chunks, last_chunk = list(
        client.chat.completions.create(**args, stream=True, extra_body={"probelens": {"threshold": threshold}})
    )
    assert last_chunk.model_extra["probelens"]["spans"] == spans


def test_metrics_count_requests_tokens_latency_and_flags(server):
    names = (
        'probelens_requests_total{outcome="200"}',
        'probelens_tokens_total{kind="completion"}',
        'probelens_tokens_total{kind="prompt"}',
        "probelens_time_to_first_token_seconds_count",
        "probelens_time_between_tokens_seconds_count",
        "probelens_flagged_answers_total",
    )
    before = {name: server.metric(name) for name in names}
    reply = server.client().chat.completions.create(
        model=server.model,
        messages=ask("Count me (metrics)."),
        max_tokens=6,
        temperature=0,
        extra_body={"probelens": {"threshold": 0.000001}},  # every scored token is flagged
    )
    after = {name: server.metric(name) for name in names}
    made = reply.usage.completion_tokens
    assert made > 1
    assert after[names[0]] == before[names[0]] + 1
    assert after[names[1]] == before[names[1]] + made
    assert after[names[2]] == before[names[2]] + reply.usage.prompt_tokens
    assert after[names[3]] == before[names[3]] + 1
    assert after[names[4]] > before[names[4]]
    assert after[names[5]] == before[names[5]] + 1
    text = httpx.get(server.url + "/metrics").text
    assert "probelens_queue_length " in text and "probelens_requests_in_flight " in text


def test_flagged_capture_stores_answers_at_its_threshold(server):
    reply = server.client("flagged_low").chat.completions.create(
        model=server.model, messages=ask("Flag me (threshold 0)."), max_tokens=5, temperature=0
    )
    deadline = time.time() + 20
    while not served_rows(server.database, "flagged-low") and time.time() < deadline:
        time.sleep(0.1)
    [row] = served_rows(server.database, "flagged-low")
    assert row.source == "served" and row.completion == reply.choices[0].message.content
    assert row.extra["api_key"] == "flagged-low"


def test_the_service_log_holds_no_prompt_or_answer(server):
    prompt = "A secret prompt: the launch code is 0000 (log)."
    reply = server.client().chat.completions.create(model=server.model, messages=ask(prompt), max_tokens=12)
    answer = reply.choices[0].message.content
    time.sleep(0.5)
    log = server.log.read_text()
    assert "serving" in log  # the log is the service's stderr
    assert prompt not in log and "launch code" not in log
    assert len(answer.strip()) < 4 or answer not in log
    assert "What is the capital of France?" not in log  # an earlier test's prompt


# --- structured output (response_format) ----------------------------------------------------

VERDICT = {
    "type": "object",
    "properties": {
        "label": {"enum": ["Supported", "Not Supported"]},
        "n": {"type": "integer", "minimum": 0, "maximum": 9},
    },
    "required": ["label", "n"],
    "additionalProperties": False,
}


def _verdict_format(schema=VERDICT) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema, "strict": True}}


def test_response_format_json_schema_streamed_and_not(server):
    """The tiny model's weights are random: JSON that validates comes from the constraint."""
    import jsonschema

    client = server.client()
    for seed in range(3):
        reply = client.chat.completions.create(
            model=server.model,
            messages=ask(f"Judge claim {seed} as JSON"),
            max_tokens=48,
            temperature=1.0,
            seed=seed,
            response_format=_verdict_format(),
        )
        assert reply.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(reply.choices[0].message.content), VERDICT)
        stream = client.chat.completions.create(
            model=server.model,
            messages=ask(f"Judge claim {seed} as JSON"),
            max_tokens=48,
            temperature=1.0,
            seed=seed,
            response_format=_verdict_format(),
            stream=True,
        )
        streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert streamed == reply.choices[0].message.content  # the same seed, the same answer
    plain = client.chat.completions.create(
        model=server.model, messages=ask("Judge claim 0 as JSON"), max_tokens=48, temperature=1.0, seed=0
    )
    with pytest.raises(ValueError):
        json.loads(plain.choices[0].message.content)
    text = client.chat.completions.create(
        model=server.model,
        messages=ask("Judge claim 0 as JSON"),
        max_tokens=48,
        temperature=1.0,
        seed=0,
        response_format={"type": "text"},
    )
    assert text.choices[0].message.content == plain.choices[0].message.content
    obj = client.chat.completions.create(
        model=server.model,
        messages=ask("Any object"),
        max_tokens=48,
        temperature=0,
        response_format={"type": "json_object"},
    )
    assert obj.choices[0].message.content.startswith("{")


def test_a_response_format_that_cannot_be_enforced_is_a_400_with_one_message(server):
    client = server.client()
    bad_schema = {"type": "object", "if": {"type": "object"}, "then": {}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=server.model, messages=ask("Hi?"), max_tokens=8, response_format=_verdict_format(bad_schema)
        )
    error = caught.value.body
    assert error["param"] == "response_format.json_schema.schema" and "if" in error["message"]
    assert error["code"] == "invalid_json_schema"
    for wrong, param in [
        ({"type": "xml"}, "response_format.type"),
        ({"type": "json_schema"}, "response_format.json_schema"),
        ({"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}, "response_format.json_schema.name"),
        ({"type": "json_schema", "json_schema": {"name": "v", "schema": [1]}}, "response_format.json_schema.schema"),
    ]:
        reply = httpx.post(
            server.url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {server.keys['plain']}"},
            json={"model": server.model, "messages": ask("Hi?"), "max_tokens": 8, "response_format": wrong},
        )
        assert reply.status_code == 400 and reply.json()["error"]["param"] == param, reply.text
