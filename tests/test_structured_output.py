"""Constrained decoding in the batched engine: a random model writes JSON that fits the schema.

The tiny model's weights are random, so its free text is garbage; output that parses and
validates against the schema can only come from the mask.
"""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch

from core.base.decoding import DecodingSettings
from core.base.errors import UserError
from core.engine.batched import GenerationRequest, generate_batched
from core.engine.json_output import compile_schema, json_constraint
from core.engine.masking import allowed_tokens, constrain

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "label": {"enum": ["Supported", "Not Supported", "Insufficient Information"]},
        "count": {"type": "integer", "minimum": 0, "maximum": 999},
        "ok": {"type": "boolean"},
        "ids": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 9}, "maxItems": 3},
    },
    "required": ["name", "label", "count", "ok", "ids"],
    "additionalProperties": False,
}

PROMPTS = ["Give me JSON", "The capital of France is", "Numbers: 1 2 3 4 5", "Tell me about Lviv"]


def _request(lm, prompt: str, *, schema=None, constrained=True, **decoding) -> GenerationRequest:
    settings = DecodingSettings(**{"max_new_tokens": 120, **decoding})
    constraint = json_constraint(lm, schema) if constrained else None
    return GenerationRequest(
        [{"role": "user", "content": prompt}], decoding=settings, constraint=constraint, tag=prompt
    )


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_a_random_model_writes_json_that_validates_against_the_schema(tiny_lm, temperature):
    requests = [_request(tiny_lm, p, schema=SCHEMA, temperature=temperature, seed=n) for n, p in enumerate(PROMPTS)]
    answers = list(generate_batched(tiny_lm, requests, batch_size=3))
    assert len(answers) == len(PROMPTS)
    for answer in answers:
        assert answer.finish_reason == "eos", answer.text
        parsed = json.loads(answer.text)
        jsonschema.validate(parsed, SCHEMA)
        assert list(parsed) == list(SCHEMA["properties"])  # written in the schema's order, not sorted


def test_without_the_constraint_the_same_model_writes_no_json(tiny_lm):
    """The control: the random model's own text is not JSON, so the test above tests the mask."""
    requests = [_request(tiny_lm, p, constrained=False, max_new_tokens=40) for p in PROMPTS]
    for answer in generate_batched(tiny_lm, requests, batch_size=4):
        with pytest.raises(ValueError):
            json.loads(answer.text)


def test_json_object_gives_a_json_object(tiny_lm):
    """`json_object`: any object. A random model may nest forever, so a cut answer is checked as a
    prefix: it starts with "{", and a finished one parses as an object."""
    requests = [_request(tiny_lm, p, schema=None, temperature=1.0, seed=n) for n, p in enumerate(PROMPTS)]
    for answer in generate_batched(tiny_lm, requests, batch_size=4):
        assert answer.text.startswith("{")
        if answer.finish_reason == "eos":
            assert isinstance(json.loads(answer.text), dict)


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_a_constrained_neighbour_leaves_an_unconstrained_answer_unchanged(tiny_lm, temperature):
    def plain():
        return _request(tiny_lm, "Tell me about Lviv", constrained=False, temperature=temperature, seed=7)

    (alone,) = generate_batched(tiny_lm, [plain()], batch_size=1)
    together = list(
        generate_batched(
            tiny_lm,
            [_request(tiny_lm, "Give me JSON", schema=SCHEMA, temperature=temperature, seed=3), plain()],
            batch_size=2,
        )
    )
    mixed = next(a for a in together if a.request.constraint is None)
    assert [t.token_id for t in mixed.tokens] == [t.token_id for t in alone.tokens]
    assert mixed.text == alone.text
    assert mixed.trace.logprobs == pytest.approx(alone.trace.logprobs, abs=1e-4)


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"type": "string", "format": "no-such-format"}, "no-such-format"),
        ({"type": "object", "if": {"type": "object"}, "then": {}}, "if"),
        (["not", "an", "object"], "must be an object"),
    ],
)
def test_a_schema_that_cannot_be_enforced_is_refused_with_one_message(tiny_lm, schema, words):
    with pytest.raises(UserError) as caught:
        compile_schema(tiny_lm, schema)
    assert words in str(caught.value)


def test_masks_unpack_to_the_allowed_tokens_and_leave_other_rows_alone():
    vocab = 70  # three 32-bit words, the last one partly used
    wanted = [{0, 31, 32, 69}, {5}]
    masks = []
    for allowed in wanted:
        words = [0, 0, 0]
        for t in allowed:
            words[t // 32] |= 1 << (t % 32)
        masks.append(b"".join(w.to_bytes(4, "little", signed=False) for w in words))
    bits = allowed_tokens(masks, vocab)
    assert [set(row.nonzero().flatten().tolist()) for row in bits] == wanted

    class Fixed:
        error = None

        def __init__(self, mask: bytes) -> None:
            self.mask = mask

        def allowed(self) -> bytes:
            return self.mask

        def accept(self, token_id: int) -> bool:
            return True

    logits = torch.randn(3, vocab)
    drawn, failed = constrain(logits, [None, Fixed(masks[0]), Fixed(b"\0" * 12)])
    assert torch.equal(drawn[0], logits[0])
    assert set(torch.isfinite(drawn[1]).nonzero().flatten().tolist()) == wanted[0]
    assert failed == {2: "no token is allowed"}
    assert constrain(logits, [None, None, None])[0] is logits
