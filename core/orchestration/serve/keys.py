"""Who may call the API: the bearer key resolved to its current owner, and its requests in flight.

The key is looked up on every request (one indexed read; the last use is written at most every
30 s), so revoking it, deactivating its owner or changing their role takes effect at once.
"""

from __future__ import annotations

import threading
from collections import Counter

from core.orchestration.serve.schema import ApiError
from db import Database
from db.api_keys import KeyOwner, resolve_key


def bearer(header: str | None) -> str | None:
    if not header or not header.lower().startswith("bearer "):
        return None
    return header[7:].strip() or None


def authenticate(database: Database, header: str | None) -> KeyOwner:
    """The key's owner, or a 401 in OpenAI's shape (the same message whatever was wrong)."""
    token = bearer(header)
    owner = None
    if token is not None:
        with database.sessions() as session, session.begin():
            owner = resolve_key(session, token)
    if owner is None:
        raise ApiError(
            401,
            "invalid API key: pass a valid key as 'Authorization: Bearer <key>'",
            type="invalid_request_error",
            code="invalid_api_key",
        )
    return owner


class InFlight:
    """Requests in flight per key; `take` refuses past the limit with a 429 and Retry-After."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._counts: Counter[int] = Counter()

    def take(self, key_id: int) -> None:
        with self._lock:
            if self._counts[key_id] >= self.limit:
                raise ApiError(
                    429,
                    f"this key already has {self.limit} requests in flight; retry when one ends",
                    type="rate_limit_exceeded",
                    code="rate_limit_exceeded",
                    headers={"Retry-After": "1"},
                )
            self._counts[key_id] += 1

    def give(self, key_id: int) -> None:
        with self._lock:
            self._counts[key_id] -= 1
            if self._counts[key_id] <= 0:
                del self._counts[key_id]

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())
