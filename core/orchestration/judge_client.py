"""One request to an LLM judge through the official `openai` client, with our own retry policy.

429, 5xx, timeouts and refused connections are tried again (`PROBELENS_JUDGE_ATTEMPTS` tries in
all), waiting what `Retry-After` asks (capped by `PROBELENS_JUDGE_MAX_WAIT_SECONDS`) or a
growing backoff; the client's own retries are off so that every wait is ours and can be
cancelled. A 4xx other than 429 is not retried. Each answer's text and token counts come back as
a `JudgeReply`; the answer is read by `core.text.judging.parse_output`.

Every request carries `max_tokens` (`core.text.judging.output_token_limit`, enough for the
longest answer the bounded schema allows). An endpoint that refuses `max_tokens` by name
(OpenAI's reasoning models ask for `max_completion_tokens`) is asked again at once with
`max_completion_tokens`, which is not counted as a try.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any

import openai

from core.base import settings
from core.base.progress import Cancelled, CancelToken
from db.judges import JudgeConfig


class JudgeUnavailable(Exception):
    """The judge could not be reached or kept failing; the answer is not judged this time."""


@dataclass(frozen=True)
class JudgeReply:
    text: str | None
    input_tokens: int
    output_tokens: int
    finish_reason: str | None = None  # "length": cut at max_tokens, so the JSON is unfinished


def client_for(judge: JudgeConfig) -> openai.OpenAI:
    """The judge's client: its base URL, its key from the environment variable it names, its timeout."""
    return openai.OpenAI(
        base_url=judge.base_url,
        api_key=settings.judge_api_key(judge.api_key_env, judge.name),
        timeout=judge.timeout_s,
        max_retries=0,
    )


def cost_of(judge: JudgeConfig, input_tokens: int, output_tokens: int) -> float | None:
    """What the tokens cost at the judge's prices per million (None when it has no prices)."""
    if judge.price_input_per_m is None and judge.price_output_per_m is None:
        return None
    return (input_tokens * (judge.price_input_per_m or 0.0) + output_tokens * (judge.price_output_per_m or 0.0)) / 1e6


def _retry_after(error: openai.APIStatusError) -> float | None:
    headers = getattr(error.response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            return None  # an HTTP date: fall back to the backoff
    return None


def _refuses_max_tokens(error: Exception) -> bool:
    """OpenAI's 400 for a model that takes `max_completion_tokens` only (param `max_tokens`, code
    `unsupported_parameter`); a 400 about the value of `max_tokens` is not this one."""
    return (
        isinstance(error, openai.BadRequestError)
        and getattr(error, "param", None) == "max_tokens"
        and getattr(error, "code", None) == "unsupported_parameter"
    )


def _retryable(error: Exception) -> tuple[bool, float | None, str]:
    if isinstance(error, openai.APITimeoutError):
        return True, None, "timed out"
    if isinstance(error, openai.APIConnectionError):
        return True, None, "could not connect"
    if isinstance(error, openai.APIStatusError):
        reason = f"HTTP {error.status_code}"
        if error.status_code == 429 or error.status_code >= 500:
            return True, _retry_after(error), reason
        return False, None, f"{reason}: {str(error.message)[:200]}"
    return False, None, f"{type(error).__name__}: {str(error)[:200]}"


def ask(
    client: openai.OpenAI,
    judge: JudgeConfig,
    messages: list[dict[str, str]],
    response_format: dict[str, Any],
    *,
    max_tokens: int,
    cancel: CancelToken | None = None,
    sleep_event: threading.Event | None = None,
) -> JudgeReply:
    """One chat completion of at most `max_tokens` tokens, tried again on 429/5xx/timeouts;
    raises JudgeUnavailable at the end, Cancelled if the run is cancelled while waiting."""
    attempts = settings.judge_attempts()
    cap = settings.judge_max_wait_seconds()
    waiter = sleep_event or threading.Event()
    limit = {"max_tokens": max_tokens}
    last = ""
    attempt = 0
    while attempt < attempts:
        if cancel is not None and cancel.cancelled:
            raise Cancelled("cancelled")
        try:
            completion = client.chat.completions.create(  # type: ignore[call-overload]
                model=judge.model,
                messages=messages,
                response_format=response_format,
                temperature=0,
                **limit,
            )
        except (openai.APIError, ValueError) as error:
            if "max_tokens" in limit and _refuses_max_tokens(error):
                limit = {"max_completion_tokens": max_tokens}
                continue
            retry, wait, last = _retryable(error)
            if not retry or attempt == attempts - 1:
                break
            delay = min(cap, wait if wait is not None else 0.5 * 2**attempt * (1 + random.random() / 2))
            waited = 0.0
            while waited < delay:  # short steps, so a cancel is seen while waiting
                step = min(0.1, delay - waited)
                waiter.wait(step)
                waited += step
                if cancel is not None and cancel.cancelled:
                    raise Cancelled("cancelled") from None
            attempt += 1
            continue
        usage = completion.usage
        choice = completion.choices[0] if completion.choices else None
        return JudgeReply(
            choice.message.content if choice else None,
            int(usage.prompt_tokens if usage else 0),
            int(usage.completion_tokens if usage else 0),
            choice.finish_reason if choice else None,
        )
    raise JudgeUnavailable(f"the judge did not answer after {attempt + 1} tries ({last})")
