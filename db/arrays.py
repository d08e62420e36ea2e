"""Per-token arrays <-> compact bytes (little-endian numpy), the same on every database.

Each function passes None through (a column left empty), hence the overloads: an array in, an
array out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import numpy as np


@overload
def pack_ints(values: Sequence[int]) -> bytes: ...
@overload
def pack_ints(values: None) -> None: ...
def pack_ints(values: Sequence[int] | None) -> bytes | None:
    return None if values is None else np.asarray(values, dtype="<i4").tobytes()


@overload
def unpack_ints(data: bytes) -> list[int]: ...
@overload
def unpack_ints(data: None) -> None: ...
def unpack_ints(data: bytes | None) -> list[int] | None:
    return None if data is None else np.frombuffer(data, dtype="<i4").tolist()


@overload
def pack_floats(values: Sequence[float]) -> bytes: ...
@overload
def pack_floats(values: None) -> None: ...
def pack_floats(values: Sequence[float] | None) -> bytes | None:
    return None if values is None else np.asarray(values, dtype="<f4").tobytes()


@overload
def unpack_floats(data: bytes) -> list[float]: ...
@overload
def unpack_floats(data: None) -> None: ...
def unpack_floats(data: bytes | None) -> list[float] | None:
    return None if data is None else np.frombuffer(data, dtype="<f4").astype(float).tolist()


@overload
def pack_offsets(offsets: Sequence[tuple[int, int]]) -> bytes: ...
@overload
def pack_offsets(offsets: None) -> None: ...
def pack_offsets(offsets: Sequence[tuple[int, int]] | None) -> bytes | None:
    return None if offsets is None else np.asarray(offsets, dtype="<i4").reshape(-1, 2).tobytes()


@overload
def unpack_offsets(data: bytes) -> list[tuple[int, int]]: ...
@overload
def unpack_offsets(data: None) -> None: ...
def unpack_offsets(data: bytes | None) -> list[tuple[int, int]] | None:
    if data is None:
        return None
    return [(int(a), int(b)) for a, b in np.frombuffer(data, dtype="<i4").reshape(-1, 2)]
