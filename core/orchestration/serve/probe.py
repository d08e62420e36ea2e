"""The probe version the service scores with, re-read while it serves.

With `--probe active`, a thread re-reads the active version every few seconds, so a promote or
rollback in the app reaches the service without a restart. A request takes the probe once, at
its start, and keeps it to its end. A version trained on another model is never used: at
start it is refused with one message; later it is logged and the previous version stays.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from core.base.errors import UserError
from core.engine.model import LazyModel, LoadedModel
from core.orchestration.registry import load_version
from db import Database
from db.probes import active_probe

log = logging.getLogger("probelens.serve")


class ProbeHolder:
    def __init__(self, database: Database, lm: LoadedModel | LazyModel, spec: str, refresh_seconds: float) -> None:
        """`spec`: "active" (follow promotions), "none", or a version number. `lm` may be a
        `LazyModel` where only the check matters (`serve --ray` before it deploys)."""
        self.database = database
        self.lm = lm
        self.follow = spec == "active"
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._probe: Any | None = None
        self._version: int | None = None
        self._refused: int | None = None  # the active version that did not fit (logged once)
        if spec == "none":
            return
        if not self.follow:
            try:
                number = int(spec)
            except ValueError:
                raise UserError(f"--probe must be active, none or a version number, got {spec!r}") from None
            self._set(load_version(database, lm, number), number)
            return
        version = self._active_version()
        if version is not None:
            self._set(load_version(database, lm, version), version)  # a mismatch raises: refused at start

    def _active_version(self) -> int | None:
        with self.database.reading() as session:
            row = active_probe(session)
            return row.version if row is not None else None

    def _set(self, probe: Any | None, version: int | None) -> None:
        with self._lock:
            self._probe, self._version = probe, version

    def current(self) -> tuple[Any | None, int | None]:
        """(the probe, its version) a new request scores with."""
        with self._lock:
            return self._probe, self._version

    def refresh(self) -> None:
        """Load the active version if it changed; a version that does not fit is logged, not used."""
        version = self._active_version()
        with self._lock:
            unchanged = version == self._version or version == self._refused
        if unchanged:
            return
        if version is None:
            self._set(None, None)
            log.warning("no probe version is active any more: answers are served unscored")
            return
        try:
            probe = load_version(self.database, self.lm, version)
        except UserError as exc:
            self._refused = version
            log.error("probe v%s is active but cannot score this model, keeping v%s: %s", version, self._version, exc)
            return
        self._set(probe, version)
        log.info("now scoring with probe v%s", version)

    def start(self) -> None:
        if self.follow:
            threading.Thread(target=self._loop, name="probelens-probe-refresh", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            try:
                self.refresh()
            except Exception:  # a database hiccup must not end the refreshing
                log.exception("could not re-read the active probe version")
