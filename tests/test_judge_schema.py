"""The LLM judge's response schema is bounded, so constrained decoding always ends inside the
token limit the judge's requests carry: every string has a pattern with a length, every array a
`maxItems`, every integer a `maximum` (keywords OpenAI's strict mode takes), and our own serve
enforces them. The tiny model's weights are random, so a reply that validates comes from the mask."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest
from fastapi.testclient import TestClient

from core.base.decoding import MAX_NEW_TOKENS
from core.engine.json_output import json_constraint
from core.engine.masking import allowed_tokens
from core.engine.model import load_model
from core.orchestration.judge_client import ask
from core.orchestration.serve.app import Limits, Service, create_app
from core.orchestration.serve.probe import ProbeHolder
from core.text.judging import (
    DEFAULT_INSTRUCTIONS,
    OUTPUT_SCHEMA,
    RESPONSE_FORMAT,
    SCHEMA_NOTE_CHARS,
    SCHEMA_SPAN_CHARS,
    SCHEMA_SPANS,
    build_messages,
    longest_output,
    output_token_limit,
)
from db.api_keys import create_key
from db.judges import add_judge
from db.users import add_user
from tests.support.tiny_models import with_context

STRICT_MODE_STRING_KEYWORDS = {"type", "pattern", "enum", "format", "description"}


def _walk(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield schema
    for sub in schema.get("properties", {}).values():
        yield from _walk(sub)
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"])


def test_every_string_array_and_integer_of_the_schema_is_bounded_with_strict_mode_keywords():
    kinds = {"string": 0, "array": 0, "integer": 0}
    for node in _walk(OUTPUT_SCHEMA):
        kind = node.get("type")
        if kind == "string":
            assert set(node) <= STRICT_MODE_STRING_KEYWORDS, node  # no maxLength: not in strict mode's list
            assert "enum" in node or ("pattern" in node and node["pattern"].endswith("}$")), node
        elif kind == "array":
            assert isinstance(node.get("maxItems"), int), node
        elif kind == "integer":
            assert isinstance(node.get("maximum"), int) and node.get("minimum") == 0, node
        if kind in kinds:
            kinds[kind] += 1
    assert kinds == {"string": 3, "array": 2, "integer": 2}


def test_the_token_limit_holds_the_longest_document_and_fits_our_serve():
    longest = json.loads(longest_output())
    jsonschema.validate(longest, OUTPUT_SCHEMA)  # the longest document is one of the schema
    assert output_token_limit() == len(longest_output()) + 1 <= MAX_NEW_TOKENS
    # ... and it is the longest: one more span, or one more character in a string, is refused
    span = longest["spans"][0]
    for too_long in (
        {"spans": longest["spans"] + [span]},
        {"spans": [{**span, "text": span["text"] + "x"}]},
        {"spans": [{**span, "note": span["note"] + "x"}]},
        {"spans": [{**span, "evidence": span["evidence"] + [1]}]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(too_long, OUTPUT_SCHEMA)


@pytest.mark.parametrize(("field", "bound"), [("text", SCHEMA_SPAN_CHARS), ("note", SCHEMA_NOTE_CHARS)])
def test_a_string_that_would_run_on_is_closed_at_its_bound(tiny_lm, field, bound):
    """A model that wants to write one letter forever: the mask lets it write `bound` of them,
    then allows only the closing quote."""
    constraint = json_constraint(tiny_lm, OUTPUT_SCHEMA)
    prefix = '{"spans": [{"text": "' if field == "text" else '{"spans": [{"text": "Lviv", "occurrence": 0, '
    prefix += "" if field == "text" else '"label": "Supported", "note": "'
    for token in tiny_lm.tokenizer.encode(prefix, add_special_tokens=False):
        assert constraint.accept(token)
    letter = tiny_lm.tokenizer.encode("a", add_special_tokens=False)
    assert len(letter) == 1
    for _ in range(bound):
        assert constraint.accept(letter[0])
    allowed = allowed_tokens([constraint.allowed()], len(tiny_lm.tokenizer))[0].nonzero().flatten().tolist()
    assert allowed and all(tiny_lm.tokenizer.decode([t]).startswith('"') for t in allowed)
    assert not constraint.accept(letter[0])  # one letter more is refused


@pytest.fixture(scope="module")
def long_lm(tiny_model_dir, tmp_path_factory):
    """The tiny model, its config reading 8,192 positions: a judge prompt plus the token limit fit."""
    return load_model(str(with_context(tiny_model_dir, tmp_path_factory.mktemp("long") / "model", 8192)))


ANSWERS = [
    "Lviv (German: Lemberg) is a city in Ukraine, founded in 1256 by King Daniel of Galicia.",
    "Marie Curie won the Nobel Prize in Physics in 1903 and in Chemistry in 1911.",
    "Café, naïve, résumé: Zürich, Kraków and São Paulo are cities.",
]


def test_our_serve_accepts_the_judges_request_and_every_constrained_reply_parses(long_lm, sqlite_db):
    """The judge client's own request (schema, `max_tokens`, temperature 0) against our serve's
    app and engine, then the same request sampled at temperature 1 (a random model then writes
    long strings and several spans): every reply ends by itself and validates against the schema."""
    with sqlite_db.sessions() as session, session.begin():
        owner = add_user(session, "svc", "service-password")
        key = create_key(session, owner, "judge", actor=None)[1]
        judge = add_judge(session, "tiny", base_url="http://serve/v1", model=long_lm.model_id, timeout_s=600)
    limits = Limits(max_tokens=MAX_NEW_TOKENS, max_prompt_tokens=4096, max_in_flight=4, max_body_bytes=1 << 20)
    service = Service(sqlite_db, long_lm, ProbeHolder(sqlite_db, long_lm, "none", 60), limits)
    limit = output_token_limit()
    documents = []
    with TestClient(create_app(service), base_url="http://serve") as http:
        client = openai.OpenAI(base_url="http://serve/v1", api_key=key, http_client=http, max_retries=0)
        for n, answer in enumerate(ANSWERS):
            messages = build_messages(DEFAULT_INSTRUCTIONS, None, "Tell me a fact.", answer, [])
            reply = ask(client, judge, messages, RESPONSE_FORMAT, max_tokens=limit)
            sampled = client.chat.completions.create(
                model=long_lm.model_id,
                messages=messages,  # type: ignore[arg-type]
                response_format=RESPONSE_FORMAT,  # type: ignore[arg-type]
                max_tokens=limit,
                temperature=1.0,
                seed=n,
            )
            choice = sampled.choices[0]
            for text, finish, tokens in [
                (reply.text, reply.finish_reason, reply.output_tokens),
                (choice.message.content, choice.finish_reason, sampled.usage.completion_tokens),
            ]:
                assert finish == "stop" and tokens <= limit, (finish, tokens)
                document = json.loads(text or "")
                jsonschema.validate(document, OUTPUT_SCHEMA)
                documents.append(document)
    spans = [span for document in documents for span in document["spans"]]
    assert spans, "no reply wrote a span: the test would not exercise the bounds"
    assert max(len(document["spans"]) for document in documents) <= SCHEMA_SPANS
