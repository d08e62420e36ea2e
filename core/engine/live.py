"""A live answer on the shared engine, readable at any moment by the page that shows it.

The page polls `snapshot()` (a consistent copy taken under a lock) and renders it; the
engine never touches Streamlit. Stop is immediate (checked before every token), and an
optional early-stop rule halts the answer when risk gets too high, saying where and why.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.base.decoding import DecodingSettings
from core.base.types import TokenTrace
from core.engine.batched import FinishedAnswer, GenerationRequest, Scorer, shared_engine
from core.engine.model import LoadedModel
from core.engine.stream import StreamedToken
from core.text.tokens import trailing_run


@dataclass(frozen=True)
class EarlyStopRule:
    """`token`: stop when one token's score reaches `threshold`.
    `span`: consecutive tokens scoring at least `span_floor` form a candidate entity span;
    stop when a span of two or more tokens has a mean score of at least `threshold`."""

    kind: str  # "token" or "span"
    threshold: float
    span_floor: float = 0.5

    def check(self, scores: Sequence[float], texts: Sequence[str]) -> str | None:
        """A sentence saying why to stop now, or None to go on."""
        if not scores:
            return None
        last = len(scores) - 1
        if self.kind == "token":
            if scores[last] >= self.threshold:
                return (
                    f"stopped at token {last + 1} ({texts[last]!r}): its risk {scores[last]:.2f} "
                    f"reached the early-stop threshold {self.threshold:.2f}"
                )
            return None
        first = trailing_run(scores, self.span_floor)  # the run over the floor ending with this token
        run = scores[first:]
        if len(run) >= 2 and sum(run) / len(run) >= self.threshold:
            text = "".join(texts[first:])
            return (
                f"stopped at token {last + 1}: the span {text!r} (tokens {first + 1}-{last + 1}) has mean risk "
                f"{sum(run) / len(run):.2f}, at or above the early-stop threshold {self.threshold:.2f}"
            )
        return None


@dataclass
class LiveSnapshot:
    trace: TokenTrace
    produced_at: list[float]
    text: str
    running: bool
    finish_reason: str | None
    stop_note: str | None
    error: str | None
    result: Any


@dataclass
class LiveGeneration:
    """One session's answer, generated on the process's shared engine (`shared_engine`).

    Concurrent sessions share batched forward passes; each sees only its own tokens. The
    engine thread only appends tokens here; saving (`on_finish`) runs on this answer's own
    thread, so a slow database never holds up the other sessions' tokens."""

    lm: LoadedModel
    messages: list[dict[str, str]]
    decoding: DecodingSettings = field(default_factory=DecodingSettings)
    probe: Scorer | None = None  # passed whole: its model generates (a LoRA probe's copy) and it scores
    early_stop: EarlyStopRule | None = None
    on_finish: Callable[[LiveSnapshot], Any] | None = None

    id: str = field(default_factory=lambda: f"live-{time.time_ns()}")
    running: bool = False
    finish_reason: str | None = None
    stop_note: str | None = None
    error: str | None = None
    result: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _trace: TokenTrace = field(default_factory=lambda: TokenTrace.empty(scored=True), repr=False)
    _produced_at: list[float] = field(default_factory=list, repr=False)
    _text: str = ""
    _request: GenerationRequest | None = field(default=None, repr=False)
    _answer: FinishedAnswer | None = field(default=None, repr=False)
    _ended: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> LiveGeneration:
        # Checked here, not on the engine thread, so bad settings fail in the caller with a clear message.
        request = GenerationRequest(
            self.messages,
            decoding=self.decoding,
            probe=self.probe,
            probe_layer=self.probe.layer if self.probe is not None else None,
            on_token=self._on_token,
        )
        request.validate(self.lm)  # the question, and that it fits (PROBELENS_MAX_PROMPT_TOKENS, the context)
        if self.probe is not None:
            self.lm.check_layer(self.probe.layer)
        self._request = request
        self.running = True
        self._thread = threading.Thread(target=self._run, name=f"generate-{self.id}", daemon=True)
        self._thread.start()
        shared_engine(self.lm, model=self.probe.model if self.probe is not None else None).submit(
            request, self._ended_with
        )
        return self

    def stop(self) -> None:
        if self._request is not None:
            self._request.stop()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _on_token(self, token: StreamedToken) -> bool:
        """On the engine thread: record the token; True stops this answer (early stop)."""
        with self._lock:
            self._trace.append_from(token.trace, token.index)
            self._produced_at.append(time.time())
            self._text += token.text
        if self.early_stop is not None and token.score is not None and self.stop_note is None:
            note = self.early_stop.check(self._trace.scores or [], self._trace.texts)
            if note:
                self.stop_note = note
                return True
        return False

    def _ended_with(self, answer: FinishedAnswer) -> None:
        self._answer = answer
        self._ended.set()

    def _run(self) -> None:
        self._ended.wait()
        answer = self._answer
        assert answer is not None
        if answer.finish_reason.startswith("error"):
            self.error = answer.finish_reason.removeprefix("error: ")
            self.finish_reason = "error"
        else:
            self.finish_reason = "early_stop" if self.stop_note else answer.finish_reason
        with self._lock:
            self._text = answer.text
        if self.on_finish is not None and self.error is None:
            try:
                self.result = self.on_finish(self.snapshot(running=False))
            except Exception as exc:
                self.error = f"could not save the answer: {exc}"
        self.running = False

    def snapshot(self, running: bool | None = None) -> LiveSnapshot:
        with self._lock:
            trace = self._trace.copy(scored=self.probe is not None)
            return LiveSnapshot(
                trace,
                list(self._produced_at),
                self._text,
                self.running if running is None else running,
                self.finish_reason,
                self.stop_note,
                self.error,
                self.result,
            )
