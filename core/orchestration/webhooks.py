"""Webhooks: after an annotation or gold save commits, POST a small JSON to each URL an admin set.

`PROBELENS_WEBHOOK_URLS` lists the URLs. Each save starts one daemon thread that posts to them
in turn (5 s timeout each), so a slow or dead receiver never delays or fails the save; a
failure is logged (scheme and host only: a URL's path or query may hold a secret) and dropped,
with no retry. The body names the answer, the version, who saved and, where the save knows
them, the spans; a receiver that needs more asks the CLI or an export (docs/formats.md).
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from core.base import settings
from core.base.errors import UserError
from core.base.types import Span

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 5.0
EVENTS = ("annotation.save", "gold.save")


def spans_json(spans: Sequence[Span]) -> list[dict[str, Any]]:
    return [{"start": s.start, "end": s.end, "label": s.label} for s in spans]


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}"


def _post_all(urls: list[str], body: bytes, event: str) -> None:
    for url in urls:
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "ProbeLens-webhook"},
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                response.read(4096)
        except Exception as exc:  # a receiver's failure is logged, never the save's
            log.warning("webhook %s to %s failed: %s", event, _where(url), type(exc).__name__)


def notify(event: str, payload: dict[str, Any]) -> threading.Thread | None:
    """POST `{"event", "at", **payload}` to every webhook URL on a thread of its own; returns the
    thread (None when no URL is set or the setting cannot be used, which is logged)."""
    try:
        urls = settings.webhook_urls()
    except UserError as exc:
        log.warning("webhooks off: %s", exc)
        return None
    if not urls:
        return None
    body = json.dumps({"event": event, "at": datetime.now(UTC).isoformat(), **payload}).encode("utf-8")
    thread = threading.Thread(target=_post_all, args=(urls, body, event), name=f"webhook-{event}", daemon=True)
    thread.start()
    return thread
