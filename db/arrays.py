"""Per-token arrays <-> compact bytes (little-endian numpy), the same on every database."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pack_ints(values: Sequence[int] | None) -> bytes | None:
    return None if values is None else np.asarray(values, dtype="<i4").tobytes()


def unpack_ints(data: bytes | None) -> list[int] | None:
    return None if data is None else np.frombuffer(data, dtype="<i4").tolist()


def pack_floats(values: Sequence[float] | None) -> bytes | None:
    return None if values is None else np.asarray(values, dtype="<f4").tobytes()


def unpack_floats(data: bytes | None) -> list[float] | None:
    return None if data is None else np.frombuffer(data, dtype="<f4").astype(float).tolist()


def pack_offsets(offsets: Sequence[tuple[int, int]] | None) -> bytes | None:
    return None if offsets is None else np.asarray(offsets, dtype="<i4").reshape(-1, 2).tobytes()


def unpack_offsets(data: bytes | None) -> list[tuple[int, int]] | None:
    if data is None:
        return None
    return [(int(a), int(b)) for a, b in np.frombuffer(data, dtype="<i4").reshape(-1, 2)]
