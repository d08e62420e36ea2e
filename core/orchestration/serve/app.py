"""The FastAPI app of `python -m core serve`: routes, limits and the OpenAI error shape.

Nothing here logs a prompt or an answer: only capture (per key, opt-in) stores them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from core.base import settings
from core.base.decoding import LogitsConstraint
from core.base.errors import UserError
from core.engine.batched import shared_engine
from core.engine.json_output import json_constraint
from core.engine.model import LoadedModel, get_model
from core.engine.stream import prompt_ids
from core.orchestration.actions.generate import finished_answer_extra
from core.orchestration.serve import schema
from core.orchestration.serve.capture import Capture, wanted
from core.orchestration.serve.keys import InFlight, authenticate
from core.orchestration.serve.metrics import ServeMetrics
from core.orchestration.serve.probe import ProbeHolder
from core.orchestration.serve.schema import ApiError, ChatRequest
from core.orchestration.serve.streaming import EngineFailed, ServedAnswer, ServedToken
from db import Database
from db.api_keys import KeyOwner

log = logging.getLogger("probelens.serve")
#: The service's own log lines (probe swaps, capture errors); never a prompt or an answer.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass
class Limits:
    max_tokens: int
    max_prompt_tokens: int
    max_in_flight: int
    max_body_bytes: int

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            settings.serve_max_tokens(),
            settings.serve_max_prompt_tokens(),
            settings.serve_max_in_flight(),
            settings.serve_max_body_bytes(),
        )


class Service:
    """What the routes share: the model, the probe holder, keys in flight, metrics, capture."""

    def __init__(self, database: Database, lm: LoadedModel, probes: ProbeHolder, limits: Limits) -> None:
        self.database = database
        self.lm = lm
        self.model_id = lm.model_id
        self.probes = probes
        self.limits = limits
        self.in_flight = InFlight(limits.max_in_flight)
        self.metrics = ServeMetrics(lambda: float(len(shared_engine(lm).engine.waiting)), self.in_flight.total)
        self.capture = Capture(database, self.metrics.captured.inc, self.metrics.capture_errors.inc)

    async def body(self, request: Request) -> Any:
        """The JSON body, read up to the size limit (a longer one is refused unread)."""
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"the request body is over {limit} bytes", code="request_too_large")
        data = bytearray()
        async for piece in request.stream():
            data.extend(piece)
            if len(data) > limit:
                raise ApiError(413, f"the request body is over {limit} bytes", code="request_too_large")
        try:
            return json.loads(data)
        except ValueError:
            raise ApiError(400, "the request body is not valid JSON") from None

    def prompt_ids(self, chat: ChatRequest) -> list[int]:
        """The prompt's token ids, within this service's limit (a longer one is a 400)."""
        ids = prompt_ids(self.lm, chat.messages)
        if len(ids) > self.limits.max_prompt_tokens:
            raise ApiError(
                400,
                f"the prompt has {len(ids)} tokens, over this service's limit of {self.limits.max_prompt_tokens}",
                param="messages",
                code="context_length_exceeded",
            )
        return ids

    def constraint(self, chat: ChatRequest) -> LogitsConstraint | None:
        """The answer's structured-output constraint (a schema it cannot enforce is a 400)."""
        if chat.output is None:
            return None
        try:
            return json_constraint(self.lm, chat.output.schema)
        except UserError as exc:
            param = "response_format.json_schema.schema" if chat.output.type == "json_schema" else "response_format"
            raise ApiError(400, str(exc), param=param, code="invalid_json_schema") from None

    def finish(self, owner: KeyOwner, answer: ServedAnswer, probe_version: int | None) -> None:
        """After the answer: count it, and hand it to capture if this key wants it."""
        served = len(answer.served)
        self.metrics.tokens.labels("completion").inc(served)
        max_risk = answer.max_risk()
        if max_risk is not None and max_risk >= answer.chat.threshold:
            self.metrics.flagged.inc()
        if answer.stop_reason == "early_stop":
            self.metrics.early_stops.inc()
        if answer.finished is None or answer.stop_reason == "disconnected" or not wanted(owner, max_risk):
            return
        extra = finished_answer_extra(answer.finish_reason, answer.stop_note)
        extra["api_key"] = owner.key_name
        self.capture.submit(
            owner,
            answer.chat.messages,
            answer.text,
            answer.served_trace(),
            model_id=self.model_id,
            probe_version=probe_version,
            extra=extra,
        )


def _error(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="ProbeLens", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        service.metrics.requests.labels(str(exc.status)).inc()
        return _error(exc)

    @app.exception_handler(404)
    async def not_found(_request: Request, _exc: Exception) -> JSONResponse:
        return _error(ApiError(404, "no such endpoint", code="not_found"))

    @app.exception_handler(Exception)
    async def failed(_request: Request, exc: Exception) -> JSONResponse:
        log.error("request failed: %s", type(exc).__name__)
        service.metrics.requests.labels("500").inc()
        return _error(ApiError(500, "the server could not answer", type="server_error"))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        _probe, version = service.probes.current()
        return {"status": "ok", "model": service.model_id, "probe_version": version}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        await run_in_threadpool(authenticate, service.database, request.headers.get("authorization"))
        _probe, version = service.probes.current()
        entry = {
            "id": service.model_id,
            "object": "model",
            "created": 0,
            "owned_by": "probelens",
            "probelens": {"probe_version": version},
        }
        return {"object": "list", "data": [entry]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        owner = await run_in_threadpool(authenticate, service.database, request.headers.get("authorization"))
        body = await service.body(request)
        chat = schema.parse_chat(body, served_model=service.model_id, max_tokens_cap=service.limits.max_tokens)
        ids = await run_in_threadpool(service.prompt_ids, chat)
        prompt_tokens = len(ids)
        constraint = await run_in_threadpool(service.constraint, chat)
        service.in_flight.take(owner.key_id)
        try:
            probe, version = service.probes.current()
            answer = ServedAnswer(service.lm, probe, chat, asyncio.get_running_loop(), constraint)
            # The engine's own checks of the prompt (the model's context), off the loop, on the
            # ids counted above: nothing is tokenised on the loop.
            await run_in_threadpool(answer.request.validate, service.lm, ids)
            answer.start()
        except BaseException:
            service.in_flight.give(owner.key_id)
            raise
        service.metrics.tokens.labels("prompt").inc(prompt_tokens)
        if chat.stream:
            return StreamingResponse(
                _stream(service, owner, answer, version, prompt_tokens),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await _whole(service, owner, answer, version, prompt_tokens)

    return app


def build_app(
    database: Database, model: str | None, probe_spec: str, limits: Limits, refresh_seconds: float
) -> tuple[FastAPI, ProbeHolder]:
    """Load the model and the probe, and make the app: the plain service and every Ray Serve
    replica build theirs the same way, so both serve exactly the same API."""
    lm = get_model(model)
    probes = ProbeHolder(database, lm, probe_spec, refresh_seconds)
    probes.start()
    return create_app(Service(database, lm, probes, limits)), probes


class _Clock:
    """Time to first token and between tokens, for the metrics."""

    def __init__(self, metrics: ServeMetrics) -> None:
        self.metrics = metrics
        self.start = time.monotonic()
        self.last: float | None = None

    def tick(self, tokens: list[ServedToken]) -> None:
        now = time.monotonic()
        if self.last is None:
            self.metrics.ttft.observe(now - self.start)
        else:
            self.metrics.between.observe((now - self.last) / max(1, len(tokens)))
        self.last = now


async def _whole(
    service: Service, owner: KeyOwner, answer: ServedAnswer, version: int | None, prompt_tokens: int
) -> Response:
    clock = _Clock(service.metrics)
    try:
        async for tokens in answer.tokens():
            clock.tick(tokens)
    except EngineFailed as exc:
        log.error("the engine failed: %s", exc)
        raise ApiError(500, "the model failed while answering", type="server_error") from None
    except BaseException:
        answer.cancel()
        raise
    finally:
        service.in_flight.give(owner.key_id)
    service.finish(owner, answer, version)
    service.metrics.requests.labels("200").inc()
    created = schema.now()
    return JSONResponse(
        schema.completion(
            schema.new_id(),
            created,
            answer.chat.model,
            answer.text,
            answer.finish_reason,
            logprobs=answer.logprobs(answer.served),
            prompt_tokens=prompt_tokens,
            completion_tokens=len(answer.served),
            extension={**answer.extension(version), "risks": [t.risk for t in answer.served]},
        )
    )


async def _stream(
    service: Service, owner: KeyOwner, answer: ServedAnswer, version: int | None, prompt_tokens: int
) -> AsyncIterator[bytes]:
    chat = answer.chat
    id, created = schema.new_id(), schema.now()
    content = schema.ContentChunks(id, created, chat.model)
    clock = _Clock(service.metrics)
    ended = False
    try:
        yield schema.sse(
            schema.chunk(
                id, created, chat.model, {"role": "assistant", "content": ""}, extra={"probe_version": version}
            )
        )
        async for tokens in answer.tokens():
            clock.tick(tokens)
            text = "".join(t.text for t in tokens)
            yield content.event(text, answer.logprobs(tokens), [t.risk for t in tokens])
        yield schema.sse(
            schema.chunk(
                id, created, chat.model, {}, finish_reason=answer.finish_reason, extra=answer.extension(version)
            )
        )
        if chat.include_usage:
            yield schema.sse(schema.usage_chunk(id, created, chat.model, prompt_tokens, len(answer.served)))
        yield b"data: [DONE]\n\n"
        ended = True
    except EngineFailed as exc:
        log.error("the engine failed: %s", exc)
        yield schema.sse(schema.error_body("the model failed while answering", "server_error"))
    finally:
        if not ended:
            answer.cancel()  # the client went away (or the engine failed): free the row at once
        service.in_flight.give(owner.key_id)
        service.metrics.requests.labels("200" if ended else "disconnected").inc()
        service.finish(owner, answer, version)
