"""Served answers back to the team: stored like a Generate answer (source `served`), per key.

Stores run on one thread of their own after the answer has ended, so a slow database never
holds up a stream; a failed store is logged and counted, and never fails the response.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from core.base.types import Generation, TokenTrace
from db import Database
from db.api_keys import KeyOwner
from db.generations import save_generated
from db.models import CaptureMode, GenerationSource
from db.users import user_by_id

log = logging.getLogger("probelens.serve")


def wanted(owner: KeyOwner, max_risk: float | None) -> bool:
    """Whether this key captures an answer with this maximum risk."""
    if owner.capture == CaptureMode.ALL.value:
        return True
    if owner.capture == CaptureMode.FLAGGED.value:
        return max_risk is not None and owner.capture_threshold is not None and max_risk >= owner.capture_threshold
    return False


class Capture:
    def __init__(self, database: Database, on_stored: Any, on_error: Any) -> None:
        self.database = database
        self.on_stored = on_stored
        self.on_error = on_error
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="probelens-capture")

    def submit(
        self,
        owner: KeyOwner,
        messages: list[dict[str, str]],
        answer: str,
        trace: TokenTrace,
        *,
        model_id: str,
        probe_version: int | None,
        extra: dict[str, Any],
    ) -> Future:
        return self._pool.submit(self._store, owner, messages, answer, trace, model_id, probe_version, extra)

    def _store(
        self,
        owner: KeyOwner,
        messages: list[dict[str, str]],
        answer: str,
        trace: TokenTrace,
        model_id: str,
        probe_version: int | None,
        extra: dict[str, Any],
    ) -> int | None:
        try:
            conversation = [*messages, {"role": "assistant", "content": answer}]
            assert owner.capture_dataset is not None
            with self.database.sessions() as session, session.begin():
                row = save_generated(
                    session,
                    owner.capture_dataset,
                    Generation(conversation, model=model_id, extra=extra),
                    trace,
                    user=user_by_id(session, owner.user_id),
                    probe_version=probe_version,
                    source=GenerationSource.SERVED.value,
                )
                stored = row.id
            self.on_stored()
            return stored
        except Exception:
            self.on_error()
            log.exception("could not capture a served answer of key %s", owner.key_id)
            return None

    def close(self) -> None:
        self._pool.shutdown(wait=True)
