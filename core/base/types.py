"""Plain data shared by core/, db/ and pages: no torch, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Paper labels, canonical spelling. 1 = hallucinated, 0 = supported, None = ignored.
LABEL_VALUES: dict[str, int | None] = {
    "Not Supported": 1,
    "Insufficient Information": 1,
    "Supported": 0,
    "N/A": None,
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
    """Per-token data of a completion: what streaming and teacher forcing both produce."""

    token_ids: list[int]
    texts: list[str]
    offsets: list[tuple[int, int]]  # code points in the completion
    logprobs: list[float]
    entropies: list[float]
    scores: list[float] | None = None
