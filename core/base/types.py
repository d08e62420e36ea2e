"""Plain data shared by core/, db/ and pages: no torch, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

# Paper labels, canonical spelling. 1 = hallucinated, 0 = supported, None = ignored.
LABEL_VALUES: dict[str, int | None] = {
    "Not Supported": 1,
    "Insufficient Information": 1,
    "Supported": 0,
    "N/A": None,
}
# The labels by name, for code that means one of them (the strings are LABEL_VALUES' keys).
NOT_SUPPORTED, INSUFFICIENT_INFORMATION, SUPPORTED, NOT_APPLICABLE = LABEL_VALUES
# The word people see for each label (README "Labels"); the browser gets it in its payload.
LABEL_WORDS: dict[str, str] = {
    NOT_SUPPORTED: "hallucinated",
    INSUFFICIENT_INFORMATION: "unverifiable",
    SUPPORTED: "supported",
    NOT_APPLICABLE: "ignore",
}
IGNORE = -1  # token label meaning "not scored" (prompt tokens, N/A spans)


@dataclass(frozen=True)
class Span:
    """A labelled range of the completion, in Unicode code points of NFC text."""

    start: int
    end: int
    label: str
    note: str | None = None


@dataclass
class Generation:
    """One conversation whose last message is the assistant answer being probed."""

    conversation: list[dict[str, str]]
    spans: list[Span] = field(default_factory=list)
    id: str | None = None
    model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def completion(self) -> str:
        return self.conversation[-1]["content"]

    @property
    def prompt_messages(self) -> list[dict[str, str]]:
        return self.conversation[:-1]


@dataclass
class TokenTrace:
    """Per-token data of a completion: the one record every producer returns (the stream, the
    batched engine, teacher forcing, the activation cache, storage, interchange) and every
    consumer takes. Types that add more (hidden states, a cache key) hold one, never copy it."""

    token_ids: list[int]
    texts: list[str]
    offsets: list[tuple[int, int]]  # code points in the completion
    logprobs: list[float]
    entropies: list[float]
    scores: list[float] | None = None  # a probe's per-token risk; None when nothing scored it

    @classmethod
    def empty(cls, scored: bool = False) -> TokenTrace:
        """A trace to fill token by token (`append`); `scored` gives it a score list."""
        return cls([], [], [], [], [], [] if scored else None)

    def append(
        self, token_id: int, text: str, offset: tuple[int, int], logprob: float, entropy: float, score: float | None
    ) -> None:
        """Add one token (a scored trace records an unscored token as NaN)."""
        self.token_ids.append(token_id)
        self.texts.append(text)
        self.offsets.append(offset)
        self.logprobs.append(logprob)
        self.entropies.append(entropy)
        if self.scores is not None:
            self.scores.append(score if score is not None else float("nan"))

    def append_from(self, other: TokenTrace, index: int) -> None:
        """Add token `index` of `other` (a live session copying a streamed token)."""
        score = other.scores[index] if other.scores is not None else None
        self.append(
            other.token_ids[index],
            other.texts[index],
            other.offsets[index],
            other.logprobs[index],
            other.entropies[index],
            score,
        )

    def copy(self, scored: bool | None = None) -> TokenTrace:
        """A copy with its own lists (a snapshot); `scored=False` drops the scores."""
        keep = self.scores is not None if scored is None else scored
        scores = list(self.scores) if keep and self.scores is not None else ([] if keep else None)
        return TokenTrace(
            list(self.token_ids),
            list(self.texts),
            list(self.offsets),
            list(self.logprobs),
            list(self.entropies),
            scores,
        )

    def with_scores(self, scores: Sequence[float] | None) -> TokenTrace:
        """The same tokens with these scores (None: unscored); the token lists are shared."""
        return replace(self, scores=None if scores is None else list(scores))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, under the field names (`from_dict` reads it back)."""
        return {
            "token_ids": list(self.token_ids),
            "texts": list(self.texts),
            "offsets": [list(o) for o in self.offsets],
            "logprobs": list(self.logprobs),
            "entropies": list(self.entropies),
            "scores": None if self.scores is None else list(self.scores),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenTrace:
        """What `to_dict` (or `dataclasses.asdict`) wrote; offsets come back as tuples."""
        return cls(
            list(data["token_ids"]),
            list(data["texts"]),
            [(int(a), int(b)) for a, b in data["offsets"]],
            list(data["logprobs"]),
            list(data["entropies"]),
            None if data.get("scores") is None else list(data["scores"]),
        )
