"""Requests in, OpenAI-shaped responses out: the one place that knows the wire format.

Requests are checked by hand, not by a pydantic model, so every refusal carries OpenAI's error
JSON (`{"error": {"message", "type", "param", "code"}}`) with the parameter it is about, which
the official client turns into its own exception classes.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from core.base.decoding import DecodingSettings
from core.base.errors import UserError
from core.engine.live import EarlyStopRule

MAX_STOP_STRINGS = 4
MAX_TOP_LOGPROBS = 20
SCHEMA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class ApiError(Exception):
    """A refusal in OpenAI's shape; `headers` carries Retry-After for 429s."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


@dataclass(frozen=True)
class ChatRequest:
    """A checked chat request: what the engine needs and what the response must echo."""

    messages: list[dict[str, str]]
    model: str
    decoding: DecodingSettings
    stream: bool = False
    include_usage: bool = False
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    early_stop: EarlyStopRule | None = None
    threshold: float = 0.5  # risk at which a token counts as flagged (spans, max risk)
    output: OutputFormat | None = None  # response_format json_object / json_schema (None: text)


@dataclass(frozen=True)
class OutputFormat:
    """A checked `response_format` that constrains decoding: `schema` None means any JSON object."""

    type: str  # json_object | json_schema
    schema: dict[str, Any] | None = None
    name: str | None = None


def _content(message: Any, n: int) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only text ones can be answered
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise _bad("only text content parts are supported", f"messages[{n}].content")
            texts.append(part["text"])
        return "".join(texts)
    if content is None:
        return ""
    raise _bad("message content must be a string or a list of text parts", f"messages[{n}].content")


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise _bad("messages must be a non-empty list", "messages")
    out = []
    for n, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise _bad("each message needs a role: system, developer, user or assistant", f"messages[{n}].role")
        out.append({"role": ROLES[message["role"]], "content": _content(message, n)})
    if out[-1]["role"] != "user" or not out[-1]["content"].strip():
        raise _bad("the last message must be a non-empty user message", "messages")
    return out


def _number(body: dict[str, Any], name: str, default: Any, kind: type) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{name} must be a number", name)
    if kind is int and value != int(value):
        raise _bad(f"{name} must be an integer", name)
    return kind(value)


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise _bad("stop must be a non-empty string or a list of them", "stop")
    if len(stops) > MAX_STOP_STRINGS:
        raise _bad(f"stop takes at most {MAX_STOP_STRINGS} strings", "stop")
    return tuple(stops)


def _threshold(extension: Any) -> float:
    if extension is None or extension.get("threshold") is None:
        return 0.5
    value = extension["threshold"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value <= 1.0:
        raise _bad("probelens.threshold must be in (0, 1]", "probelens.threshold")
    return float(value)


def _early_stop(extension: Any) -> EarlyStopRule | None:
    if extension is None:
        return None
    rule = extension.get("early_stop")
    if rule is None:
        return None
    if not isinstance(rule, dict) or rule.get("kind") not in ("token", "span"):
        raise _bad('probelens.early_stop needs kind "token" or "span"', "probelens.early_stop.kind")
    threshold = rule.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 < threshold <= 1.0:
        raise _bad("probelens.early_stop.threshold must be in (0, 1]", "probelens.early_stop.threshold")
    return EarlyStopRule(rule["kind"], float(threshold))


def _response_format(value: Any) -> OutputFormat | None:
    """OpenAI's `response_format`: text (nothing to enforce), json_object, or json_schema with a
    name and a schema object (`strict` is accepted: the schema is always enforced)."""
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in ("text", "json_object", "json_schema"):
        raise _bad('response_format.type must be "text", "json_object" or "json_schema"', "response_format.type")
    if value["type"] == "text":
        return None
    if value["type"] == "json_object":
        return OutputFormat("json_object")
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise _bad("response_format.json_schema must be an object", "response_format.json_schema")
    name = spec.get("name")
    if not isinstance(name, str) or not SCHEMA_NAME.fullmatch(name):
        raise _bad(
            "response_format.json_schema.name must be 1 to 64 letters, digits, _ or -",
            "response_format.json_schema.name",
        )
    schema = spec.get("schema")
    if schema is None:
        schema = {}  # OpenAI's default: any JSON value
    if not isinstance(schema, dict):
        raise _bad("response_format.json_schema.schema must be an object", "response_format.json_schema.schema")
    if not isinstance(spec.get("strict", False), bool | None):
        raise _bad("response_format.json_schema.strict must be true or false", "response_format.json_schema.strict")
    return OutputFormat("json_schema", schema, name)


def parse_chat(body: Any, *, served_model: str, max_tokens_cap: int) -> ChatRequest:
    """A checked request, or an ApiError saying which parameter is wrong."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model is required", "model")
    if model != served_model:
        raise ApiError(
            404,
            f"the model {model!r} is not served here; GET /v1/models lists {served_model!r}",
            param="model",
            code="model_not_found",
        )
    messages = _messages(body.get("messages"))
    if _number(body, "n", 1, int) != 1:
        raise _bad("only n=1 is supported", "n")
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _number(body, name, max_tokens_cap, int)
    if not 1 <= max_tokens <= max_tokens_cap:
        raise _bad(f"{name} must be between 1 and {max_tokens_cap}", name)
    seed = _number(body, "seed", None, int)
    try:
        decoding = DecodingSettings(
            max_new_tokens=max_tokens,
            temperature=_number(body, "temperature", 1.0, float),
            top_p=_number(body, "top_p", 1.0, float),
            seed=seed if seed is not None else secrets.randbelow(2**31),  # no seed: a fresh draw, as OpenAI
        )
    except UserError as exc:
        raise _bad(str(exc)) from None
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise _bad("stream must be true or false", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise _bad("stream_options must be an object", "stream_options")
    logprobs = bool(body.get("logprobs") or False)
    top = _number(body, "top_logprobs", 0, int)
    if not 0 <= top <= MAX_TOP_LOGPROBS:
        raise _bad(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}", "top_logprobs")
    if top and not logprobs:
        raise _bad("top_logprobs needs logprobs: true", "top_logprobs")
    extension = body.get("probelens")
    if extension is not None and not isinstance(extension, dict):
        raise _bad("probelens must be an object", "probelens")
    return ChatRequest(
        messages=messages,
        model=model,
        decoding=decoding,
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        stop=_stop(body.get("stop")),
        logprobs=logprobs,
        top_logprobs=top,
        early_stop=_early_stop(extension),
        threshold=_threshold(extension),
        output=_response_format(body.get("response_format")),
    )


# --- responses -----------------------------------------------------------------------------

#: JSON as the API writes it: UTF-8 text as is, and no NaN or infinity (not JSON).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)


def dumps(obj: Any) -> str:
    return _ENCODER.encode(obj)


def sse(obj: Any) -> bytes:
    """One server-sent event holding `obj`."""
    return f"data: {dumps(obj)}\n\n".encode()


def new_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chunk(
    id: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    *,
    finish_reason: str | None = None,
    logprobs: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One `chat.completion.chunk`; `extra` adds the top-level `probelens` extension."""
    out: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}],
    }
    if extra:
        out["probelens"] = extra
    return out


def usage_chunk(id: str, created: int, model: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """The last chunk of `stream_options.include_usage`: no choices, only usage."""
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def completion(
    id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str,
    *,
    logprobs: dict[str, Any] | None,
    prompt_tokens: int,
    completion_tokens: int,
    extension: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
        "probelens": extension,
    }


class ContentChunks:
    """The content chunks of one stream, as SSE events: the chunk's fixed part (id, created,
    model) is serialised once, so per chunk only its text, log-probs and risks are. Each event
    is byte for byte `sse(chunk(id, created, model, {"content": text}, logprobs=...,
    extra={"risks": risks}))`."""

    def __init__(self, id: str, created: int, model: str) -> None:
        fixed = dumps(
            {
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": None,
            }
        )
        self._head = "data: " + fixed[:-1] + ', "choices": [{"index": 0, "delta": {"content": '

    def event(self, text: str, logprobs: dict[str, Any] | None, risks: list[float | None]) -> bytes:
        return (
            f'{self._head}{dumps(text)}}}, "logprobs": {dumps(logprobs)}, "finish_reason": null}}], '
            f'"probelens": {{"risks": {dumps(risks)}}}}}\n\n'
        ).encode()
