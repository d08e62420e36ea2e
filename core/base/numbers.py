"""The one rule for numbers that leave the process (JSON, tables, stored metrics)."""

from __future__ import annotations

import math
from typing import Any


def finite_or_none(value: Any) -> float | None:
    """A plain float, or None for anything undefined: NaN, +-inf, None, booleans, text, junk.

    JSON has neither NaN nor Infinity, and stored metrics may be odd (an uploaded probe's
    config): every reader goes through here instead of trusting the value's type.
    """
    if value is None or isinstance(value, (bool, str, bytes)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None
