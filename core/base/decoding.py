"""How an answer is sampled: the one definition every producer of answers holds.

Batch runs (`BatchParams`), bulk generation, the batched engine's requests, the stream,
live Generate sessions and the CLI all hold a `DecodingSettings`. It is checked once, when it
is made, so a bad setting is refused with one clear message where it was typed and nothing
below ever holds one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

from core.base.errors import UserError

MAX_NEW_TOKENS = 4096
MAX_TEMPERATURE = 5.0


def _number(value: Any, kind: type, what: str) -> Any:
    if isinstance(value, bool):
        raise UserError(f"{what} must be a number")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be a number") from None


@dataclass(frozen=True)
class DecodingSettings:
    """Max new tokens, temperature (0 = greedy), top-p and seed (None: 0 when sampling)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = 0

    def __post_init__(self) -> None:
        # Frozen: the normalised values are set once here (ints from a form's floats, say).
        object.__setattr__(self, "max_new_tokens", _number(self.max_new_tokens, int, "max new tokens"))
        object.__setattr__(self, "temperature", _number(self.temperature, float, "temperature"))
        object.__setattr__(self, "top_p", _number(self.top_p, float, "top-p"))
        if self.seed is not None:
            object.__setattr__(self, "seed", _number(self.seed, int, "seed"))
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise UserError(f"max new tokens must be between 1 and {MAX_NEW_TOKENS}")
        if not 0.0 <= self.temperature <= MAX_TEMPERATURE:
            raise UserError(f"temperature must be between 0 and {MAX_TEMPERATURE:g}")
        if not 0.0 < self.top_p <= 1.0:
            raise UserError("top-p must be in (0, 1]")

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def for_prompt(self, n: int) -> DecodingSettings:
        """The settings of prompt n of a bulk job: seed + n, so every prompt samples differently
        and a prompt samples the same whatever the batch or shard it lands in."""
        return self if self.seed is None else replace(self, seed=self.seed + int(n))

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], **defaults: Any) -> DecodingSettings:
        """From a dict that may hold other keys too (a run's stored params); missing keys take
        `defaults`, then the class defaults."""
        fields = ("max_new_tokens", "temperature", "top_p", "seed")
        return cls(**{**defaults, **{k: data[k] for k in fields if k in data}})


class LogitsConstraint(Protocol):
    """Which tokens one answer may take next (constrained decoding, e.g. JSON by a schema).

    Stateful and per answer: the engine asks `allowed()` before each sampled token, masks
    that answer's logits alone with it, and reports the token it drew with `accept`. The mask
    is a bitmask (bit `t % 32` of little-endian 32-bit word `t // 32` set: token t may come), the
    form constraint libraries compute natively, so no library or tensor type leaks into core.
    """

    def allowed(self) -> bytes:
        """The bitmask of the tokens that may come next (none set: the constraint failed)."""
        ...

    def accept(self, token_id: int) -> bool:
        """Advance past the drawn token; False if it broke the constraint (see `error`)."""
        ...

    @property
    def error(self) -> str | None:
        """Why the constraint cannot go on, or None."""
        ...
