"""Constrained decoding's one step in the engine: a row's logits masked by its own constraint.

A constrained row's logits are copied and masked; every other row keeps its very values, so a
structured-output request changes nothing for its neighbours in the batch. The masks arrive as
bitmasks (see `core.base.decoding.LogitsConstraint`) and are unpacked with one vectorised
shift per step for all constrained rows together.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from core.base.decoding import LogitsConstraint

_BITS = torch.arange(32, dtype=torch.int32)


def allowed_tokens(bitmasks: list[bytes], vocab: int) -> torch.Tensor:
    """Bitmasks (one per row, as `LogitsConstraint.allowed` gives them) as a bool [rows, vocab]
    tensor; tokens past a mask's end are not allowed."""
    words = torch.frombuffer(bytearray(b"".join(bitmasks)), dtype=torch.int32).view(len(bitmasks), -1)
    bits = ((words.unsqueeze(-1) >> _BITS) & 1).bool().flatten(1)
    if bits.shape[1] < vocab:
        bits = torch.cat([bits, bits.new_zeros((len(bitmasks), vocab - bits.shape[1]))], dim=1)
    return bits[:, :vocab]


def constrain(
    logits: torch.Tensor, constraints: Sequence[LogitsConstraint | None]
) -> tuple[torch.Tensor, dict[int, str]]:
    """The logits to draw from: constrained rows get -inf where their constraint forbids a token,
    the others are the very same values (`logits` itself when no row is constrained). Also the
    rows whose constraint failed (nothing allowed), with why."""
    rows = [i for i, c in enumerate(constraints) if c is not None]
    if not rows:
        return logits, {}
    masks = [constraints[i].allowed() for i in rows]  # type: ignore[union-attr]
    allowed = allowed_tokens(masks, logits.shape[-1]).to(logits.device)
    failed = {
        i: constraints[i].error or "no token is allowed"  # type: ignore[union-attr]
        for i, ok in zip(rows, allowed.any(dim=-1).tolist())
        if not ok
    }
    drawn = logits.clone()
    index = torch.tensor(rows, device=logits.device)
    drawn[index] = drawn[index].masked_fill(~allowed, float("-inf"))
    return drawn, failed
