"""How a served stream is written: content events from a template equal the chunk objects byte
for byte, and a stream that falls behind its engine gets the waiting tokens in one chunk, with
the same text, tokens and risks the official `openai` client reads from a stream that keeps up."""

from __future__ import annotations

import json
import time

import pytest

from core.orchestration.serve import schema

HOSTILE = [
    "",
    "plain",
    ' "quoted" \\ back\\slash /',
    "line\nbreak\r\ttab \x00 \x1f \x7f",
    "</script><script>alert(1)</script>",
    "\u2028\u2029 separators",
    "é e\u0301 東京 😀 👨‍👩‍👧 \ufffd",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_content_events_are_the_chunk_objects_byte_for_byte(text):
    id, created, model = "chatcmpl-abc", 1_700_000_000, 'model "with" quotes\n'
    events = schema.ContentChunks(id, created, model)
    logprobs = {
        "content": [{"token": text, "logprob": -0.25, "bytes": list(text.encode()), "top_logprobs": [], "risk": 0.5}],
        "refusal": None,
    }
    for lp, risks in ((None, [0.1, None, 1e-9, 0.9999999]), (logprobs, [0.5]), (None, [])):
        expected = schema.sse(schema.chunk(id, created, model, {"content": text}, logprobs=lp, extra={"risks": risks}))
        got = events.event(text, lp, risks)
        assert got == expected
        assert json.loads(got.decode()[len("data: ") :])["choices"][0]["delta"]["content"] == text
    with pytest.raises(ValueError):  # NaN is not JSON: refused as the dict path refuses it
        events.event(text, None, [float("nan")])


@pytest.mark.slow
def test_a_stream_behind_its_engine_gets_the_waiting_tokens_in_one_chunk(tiny_lm, tmp_path, monkeypatch):
    import openai

    from tests.support.serving import live_service

    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    with live_service(tiny_lm, tmp_path) as service:
        client = openai.OpenAI(base_url=service.url + "/v1", api_key=service.key, max_retries=0)
        args = {
            "model": tiny_lm.model_id,
            "messages": [{"role": "user", "content": "Tell me about Lviv."}],
            "max_tokens": 16,
            "temperature": 0,
            "logprobs": True,
        }
        whole = client.chat.completions.create(**args)
        assert whole.usage.completion_tokens == 16  # long enough to pile up behind a held loop
        chunks = []
        for chunk in client.chat.completions.create(**args, stream=True, stream_options={"include_usage": True}):
            chunks.append(chunk)
            if len(chunks) == 2:  # the first token arrived: hold the server's loop while the engine goes on
                service.loop.call_soon_threadsafe(time.sleep, 0.5)
    content = [c for c in chunks if c.choices and c.choices[0].logprobs is not None]
    sizes = [len(c.choices[0].logprobs.content) for c in content]
    assert max(sizes) > 1, sizes  # tokens that waited went out together
    for c in content:  # each chunk's text, tokens and risks agree with each other
        tokens = c.choices[0].logprobs.content
        assert c.choices[0].delta.content == "".join(t.token for t in tokens)
        assert c.model_extra["probelens"]["risks"] == [t.model_extra["risk"] for t in tokens]
    streamed = [t for c in content for t in c.choices[0].logprobs.content]
    expected = whole.choices[0].logprobs.content
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == len(streamed) == sum(sizes) == 16
    assert [t.token for t in streamed] == [t.token for t in expected]
    assert [t.model_extra["risk"] for t in streamed] == pytest.approx([t.model_extra["risk"] for t in expected])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
