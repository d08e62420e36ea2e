"""Where warm local workers leave their markers and logs (shared by the launcher and the worker).

Kept below both so the worker need not import the launcher, which imports the worker (its Ray
entry is submitted by reference).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from core.base.processes import process_alive
from core.engine.model import cache_root

IDLE_POLL_SECONDS = 0.2
IDLE_FRESH_SECONDS = 3.0


def log_dir() -> Path:
    """Worker logs (and the idle markers' folder) under this machine's cache."""
    return cache_root() / "runs"


def idle_dir(database) -> Path:
    """Warm workers of one database leave a fresh marker file here while they wait."""
    url = database.full_url
    return log_dir() / "idle" / hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def idle_workers(database) -> list[int]:
    """Pids of warm workers of this database that are waiting right now."""
    folder = idle_dir(database)
    if not folder.is_dir():
        return []
    alive = []
    for marker in folder.iterdir():
        try:
            fresh = time.time() - marker.stat().st_mtime < IDLE_FRESH_SECONDS
            pid = int(marker.name)
        except (OSError, ValueError):
            continue
        if fresh and process_alive(pid):
            alive.append(pid)
        elif not fresh:
            marker.unlink(missing_ok=True)
    return alive
