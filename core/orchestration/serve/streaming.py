"""One served answer on the shared batched engine, handed to asyncio a step at a time.

The engine thread only appends a token to the answer's inbox; at the end of the engine's step
(`GenerationRequest.on_step`) it wakes the event loop once for that step's tokens, so the loop
is not woken, and does not take the GIL from the engine, once per token. The loop takes
everything in the inbox at once: a stream whose client is behind gets the tokens that piled up
in one chunk. Stop strings are matched on the loop's side, which holds back the text that could
still become a stop string, so a client never sees part of one. A client that goes away calls
`cancel()`: the engine drops the row at its next step and the slot is free.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from core.base.decoding import LogitsConstraint
from core.base.types import TokenTrace
from core.engine.batched import FinishedAnswer, GenerationRequest, shared_engine
from core.engine.model import LoadedModel
from core.engine.stream import StreamedToken
from core.orchestration.serve.schema import ChatRequest
from core.text.tokens import runs_over


@dataclass
class ServedToken:
    """A token as the client gets it: its text may be cut where a stop string begins."""

    index: int
    token_id: int
    text: str
    logprob: float
    risk: float | None
    top: list[tuple[int, float]] = field(default_factory=list)


class EngineFailed(RuntimeError):
    """The engine's step failed for this answer (its message is logged, not sent)."""


class ServedAnswer:
    """Generates one answer for the API; iterate `tokens()` for what may be sent, in order."""

    def __init__(
        self,
        lm: LoadedModel,
        probe: Any | None,
        chat: ChatRequest,
        loop: asyncio.AbstractEventLoop,
        constraint: LogitsConstraint | None = None,
    ):
        self.lm = lm
        self.probe = probe
        self.chat = chat
        self.loop = loop
        # Filled on the engine thread, emptied on the loop (deque appends and pops are atomic).
        self._inbox: deque[StreamedToken | FinishedAnswer] = deque()
        self._ready = asyncio.Event()  # set on the loop when the inbox has something new
        self.request = GenerationRequest(
            chat.messages,
            decoding=chat.decoding,
            probe=probe,
            probe_layer=probe.layer if probe is not None else None,
            on_token=self._on_token,
            top_logprobs=chat.top_logprobs,
            constraint=constraint,
            on_step=self._hand_over,
        )
        self.served: list[ServedToken] = []
        self.text = ""
        self.stop_reason: str | None = None  # stop_string, early_stop, disconnected
        self.stop_note: str | None = None
        self.finished: FinishedAnswer | None = None
        self._scores: list[float] = []
        self._texts: list[str] = []

    def start(self) -> ServedAnswer:
        engine = shared_engine(self.lm, model=self.probe.model if self.probe is not None else None)
        engine.submit(self.request, self._ended)
        return self

    def _ended(self, answer: FinishedAnswer) -> None:
        """On the engine thread: hand the finished answer to the loop, after its last tokens."""
        self._inbox.append(answer)
        self._hand_over()

    def _hand_over(self) -> None:
        """On the engine thread, once a step: wake the loop for what the inbox holds."""
        self.loop.call_soon_threadsafe(self._ready.set)

    def cancel(self, reason: str = "disconnected") -> None:
        """Stop generating now (thread-safe); the engine frees the row at its next step."""
        self.stop_reason = self.stop_reason or reason
        self.request.stop()

    # -- the engine thread -------------------------------------------------------------------

    def _on_token(self, token: StreamedToken) -> bool:
        """Put the token in the inbox (the step's end hands it over); True stops the answer
        (the early-stop rule fired)."""
        self._inbox.append(token)
        rule = self.chat.early_stop
        score = token.trace.scores[token.index] if token.trace.scores is not None else None
        if rule is None or score is None or self.stop_note is not None:
            return False
        self._scores.append(float(score))
        self._texts.append(token.text)
        note = rule.check(self._scores, self._texts)
        if note:
            self.stop_note = note
            self.stop_reason = self.stop_reason or "early_stop"
            return True
        return False

    # -- the loop ----------------------------------------------------------------------------

    def _served(self, token: StreamedToken, text: str) -> ServedToken:
        trace = token.trace
        alternatives = self.request.alternatives
        return ServedToken(
            token.index,
            trace.token_ids[token.index],
            text,
            float(trace.logprobs[token.index]),
            float(trace.scores[token.index]) if trace.scores is not None else None,
            alternatives[token.index] if token.index < len(alternatives) else [],
        )

    def _release(self, pending: list[StreamedToken], upto: int) -> list[ServedToken]:
        """Serve pending tokens whose text ends at or before code point `upto` of the answer
        (`upto` None: all); a token that crosses `upto` is served cut, and released last."""
        out = []
        while pending:
            text = pending[0].text
            end = len(self.text) + len(text)
            if end > upto:
                if len(self.text) < upto and self.stop_reason == "stop_string":
                    out.append(self._served(pending.pop(0), text[: upto - len(self.text)]))
                    self.text += out[-1].text
                break
            out.append(self._served(pending.pop(0), text))
            self.text += text
        self.served.extend(out)
        return out

    def _held_back(self, full: str) -> int:
        """How many trailing code points of `full` could still begin a stop string."""
        hold = 0
        for stop in self.chat.stop:
            for k in range(min(len(stop) - 1, len(full)), hold, -1):
                if full.endswith(stop[:k]):
                    hold = k
                    break
        return hold

    async def tokens(self) -> AsyncIterator[list[ServedToken]]:
        """Batches of tokens ready to send, until the answer ends (then `finished` is set): each
        batch is all that arrived since the last one (one step's token while the client keeps
        up, more when it is behind)."""
        pending: list[StreamedToken] = []
        while True:
            await self._ready.wait()
            self._ready.clear()
            ready: list[ServedToken] = []
            while self._inbox:
                item = self._inbox.popleft()
                if isinstance(item, FinishedAnswer):
                    self.finished = item
                    failed = item.finish_reason.startswith("error")
                    if not failed and self.stop_reason != "stop_string":
                        ready += self._release(pending, 1 << 62)
                    if ready:
                        yield ready
                    if failed:
                        raise EngineFailed(item.finish_reason)
                    return
                ready += self._take(item, pending)
            if ready:
                yield ready

    def _take(self, token: StreamedToken, pending: list[StreamedToken]) -> list[ServedToken]:
        """Add one token from the engine; returns the tokens it lets through (stop strings)."""
        if self.stop_reason == "stop_string":
            return []  # tokens the engine made before it saw the stop
        pending.append(token)
        if not self.chat.stop:
            return self._release(pending, 1 << 62)
        longest = max(len(s) for s in self.chat.stop)
        full = self.text + "".join(t.text for t in pending)
        search_from = max(0, len(self.text) - longest + 1)
        hits = [i for i in (full.find(s, search_from) for s in self.chat.stop) if i >= 0]
        if hits:
            self.stop_reason = "stop_string"
            self.request.stop()
            return self._release(pending, min(hits))
        return self._release(pending, len(full) - self._held_back(full))

    # -- after the end -----------------------------------------------------------------------

    @property
    def finish_reason(self) -> str:
        """OpenAI's value: stop (end of answer or a stop string), length, or content_filter when
        the risk rule ended it (the `probelens` extension says so)."""
        if self.stop_reason == "early_stop":
            return "content_filter"
        if self.stop_reason == "stop_string":
            return "stop"
        assert self.finished is not None
        return "length" if self.finished.finish_reason == "length" else "stop"

    def served_trace(self) -> TokenTrace:
        """The per-token record of what was served (cut at a stop string), for capture."""
        assert self.finished is not None
        raw = self.finished.trace
        n = len(self.served)
        end = len(self.text)
        return TokenTrace(
            list(raw.token_ids[:n]),
            [t.text for t in self.served],
            [(min(a, end), min(b, end)) for a, b in raw.offsets[:n]],
            list(raw.logprobs[:n]),
            list(raw.entropies[:n]),
            list(raw.scores[:n]) if raw.scores is not None else None,
        )

    def max_risk(self) -> float | None:
        risks = [t.risk for t in self.served if t.risk is not None]
        return max(risks) if risks else None

    def extension(self, probe_version: int | None) -> dict[str, Any]:
        """The response's `probelens` object: who scored it, what was flagged, why it ended early."""
        threshold = self.chat.threshold
        starts, position = [], 0
        for token in self.served:
            starts.append(position)
            position += len(token.text)
        spans = []
        risks = [t.risk for t in self.served]
        for first, last in runs_over(risks, threshold):
            run = [r for r in risks[first:last] if r is not None]
            start, end = starts[first], starts[last - 1] + len(self.served[last - 1].text)
            spans.append(
                {
                    "start": start,
                    "end": end,
                    "text": self.text[start:end],
                    "tokens": [first, last],
                    "mean_risk": sum(run) / len(run),
                    "max_risk": max(run),
                }
            )
        early = None
        if self.stop_reason == "early_stop":
            rule = self.chat.early_stop
            assert rule is not None
            early = {"kind": rule.kind, "threshold": rule.threshold, "note": self.stop_note}
        return {
            "probe_version": probe_version,
            "scored": self.probe is not None,
            "threshold": threshold,
            "max_risk": self.max_risk(),
            "spans": spans,
            "early_stop": early,
            "stopped_by": self.stop_reason,
        }

    def logprobs(self, tokens: list[ServedToken]) -> dict[str, Any] | None:
        """OpenAI's `logprobs` object for these tokens, each with its `risk` beside it."""
        if not self.chat.logprobs:
            return None
        decode = self.lm.tokenizer.decode
        content = []
        for token in tokens:
            top = []
            for token_id, logprob in token.top:
                text = decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
                top.append({"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))})
            content.append(
                {
                    "token": token.text,
                    "logprob": token.logprob,
                    "bytes": list(token.text.encode("utf-8")),
                    "top_logprobs": top,
                    "risk": token.risk,
                }
            )
        return {"content": content, "refusal": None}
