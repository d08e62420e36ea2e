"""JSON output by constrained decoding: a `LogitsConstraint` backed by llguidance.

Why llguidance: it installs as one dependency-free wheel (abi3, MIT; xgrammar pulls in triton
and a TVM runtime), computes a 49k-token mask in tens of microseconds on the CPU with the GIL
released, and reports unsupported JSON Schema keywords by name, so a request can be refused
with one clear message. The grammar is compiled once per schema and model (cached); each
answer gets its own matcher, the state of that answer's parse.

Whitespace between JSON tokens is fixed (`", "` and `": "`): with flexible whitespace a weak
model can spend its whole token budget on blank lines inside a valid document.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

import llguidance
import llguidance.hf

from core.base.errors import UserError
from core.engine.model import LoadedModel

ANY_OBJECT: dict[str, Any] = {"type": "object"}
_OPTIONS: dict[str, Any] = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
_GRAMMARS = 64  # compiled schemas kept per process

_lock = threading.Lock()
_tokenizers: dict[int, tuple[Any, llguidance.LLTokenizer]] = {}
_grammars: OrderedDict[tuple[int, str], str] = OrderedDict()


def vocab_size(lm: LoadedModel) -> int:
    """The width of the model's logits (its config may pad the tokenizer's vocabulary)."""
    config = lm.model.config
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return max(int(getattr(config, "vocab_size", 0) or 0), len(lm.tokenizer))


def _tokenizer(lm: LoadedModel) -> llguidance.LLTokenizer:
    """llguidance's view of the model's tokenizer (about a second for 49k tokens: made once)."""
    key = id(lm.tokenizer)
    with _lock:
        held = _tokenizers.get(key)
        if held is not None and held[0] is lm.tokenizer:
            return held[1]
    try:
        made = llguidance.hf.from_tokenizer(lm.tokenizer, n_vocab=vocab_size(lm), eos_token=sorted(lm.eos_ids))
    except ValueError as exc:  # a slow (Python) tokenizer
        raise UserError(f"structured output needs a fast tokenizer: {exc}") from None
    with _lock:
        _tokenizers[key] = (lm.tokenizer, made)
    return made


def compile_schema(lm: LoadedModel, schema: dict[str, Any] | None) -> str:
    """The grammar for JSON matching `schema` (None: any JSON object), checked against the model's
    tokenizer; a schema llguidance cannot enforce is one UserError naming what it lacks."""
    if schema is None:
        schema = ANY_OBJECT
    if not isinstance(schema, dict):
        raise UserError("the JSON schema must be an object")
    text = json.dumps(schema)  # key order kept: properties are written in the order given
    key = (id(lm.tokenizer), text)
    with _lock:
        if key in _grammars:
            _grammars.move_to_end(key)
            return _grammars[key]
    tokenizer = _tokenizer(lm)
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(text, overrides=_OPTIONS)  # type: ignore[arg-type]
    except ValueError as exc:
        raise UserError(f"the JSON schema cannot be used: {exc}") from None
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, tokenizer)
    if is_error:
        raise UserError(f"the JSON schema cannot be enforced: {messages[0] if messages else 'invalid schema'}")
    with _lock:
        _grammars[key] = grammar
        while len(_grammars) > _GRAMMARS:
            _grammars.popitem(last=False)
    return grammar


class JsonConstraint:
    """One answer's parse of its JSON: a `LogitsConstraint` (see core.base.decoding)."""

    def __init__(self, lm: LoadedModel, grammar: str) -> None:
        self._matcher = llguidance.LLMatcher(_tokenizer(lm), grammar, log_level=0)
        if self._matcher.is_error():
            raise UserError(f"the JSON schema cannot be enforced: {self._matcher.get_error()}")

    def allowed(self) -> bytes:
        return self._matcher.compute_bitmask()

    def accept(self, token_id: int) -> bool:
        return bool(self._matcher.consume_token(token_id))

    @property
    def error(self) -> str | None:
        return self._matcher.get_error() if self._matcher.is_error() else None

    @property
    def complete(self) -> bool:
        """The text so far is a whole document of the schema."""
        return bool(self._matcher.is_accepting())


def json_constraint(lm: LoadedModel, schema: dict[str, Any] | None) -> JsonConstraint:
    """A fresh constraint for one answer: JSON matching `schema`, or any JSON object for None."""
    return JsonConstraint(lm, compile_schema(lm, schema))
