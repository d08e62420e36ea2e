"""The serving API for tests: `python -m core serve` as a real process (a free port, its stderr
in a file), or the same app on uvicorn in a thread of the test's process (`live_service`)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.browser import free_port

REPO = Path(__file__).resolve().parents[2]


def start_serve(env: dict[str, str], log: Path, *args: str, timeout: float = 120) -> tuple[str, subprocess.Popen]:
    """Start `serve` with `env` over this process's environment and `args`; wait for /health.
    Returns (its base URL, the process); the caller terminates it."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "serve", "--port", str(port), *args],
        cwd=REPO,
        env={**os.environ, **env},
        stderr=log.open("w"),
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return url, proc
        except httpx.HTTPError:
            pass
        if time.time() > deadline:
            proc.terminate()
            raise AssertionError(f"serve did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def stop_serve(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(30)


@dataclass
class LiveService:
    """The real app served by uvicorn on a thread of this process (see `live_service`)."""

    url: str
    key: str  # a plain key
    capture_key: str  # a key capturing every answer into the dataset "captured"
    database: Any
    holder: Any  # the ProbeHolder, following the active version
    loop: asyncio.AbstractEventLoop  # the server's event loop (uvloop, as `serve` runs it)


@contextmanager
def live_service(lm, folder: Path, refresh_seconds: float = 0.1) -> Iterator[LiveService]:
    """The real app on uvicorn in this process (a free port), following the active probe every
    `refresh_seconds`, over a real SQLite file in `folder` whose active version v1 is a seeded
    random linear probe for `lm`. PROBELENS_PROBES_DIR must point into `folder`."""
    import uvicorn

    from core.orchestration.serve.app import Limits, Service, create_app
    from core.orchestration.serve.probe import ProbeHolder
    from db import open_database
    from db.api_keys import create_key
    from db.users import add_user
    from tests.support.probe_versions import register_linear_probe

    database = open_database(f"sqlite:///{folder / 'serve.db'}")
    assert register_linear_probe(database, lm) == 1
    with database.sessions() as session, session.begin():
        ann = add_user(session, "ann", "annotator-password")
        key = create_key(session, ann, "k", actor=None)[1]
        capture_key = create_key(session, ann, "cap", actor=None, capture="all", capture_dataset="captured")[1]
    holder = ProbeHolder(database, lm, "active", refresh_seconds)
    holder.start()
    app = create_app(Service(database, lm, holder, Limits(16, 400, 4, 16_384)))
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    loops: list[asyncio.AbstractEventLoop] = []

    def new_loop() -> asyncio.AbstractEventLoop:
        loop = (config.get_loop_factory() or asyncio.new_event_loop)()
        loops.append(loop)
        return loop

    def run() -> None:
        with asyncio.Runner(loop_factory=new_loop) as runner:
            runner.run(server.serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield LiveService(f"http://127.0.0.1:{port}", key, capture_key, database, holder, loops[0])
    finally:
        server.should_exit = True
        thread.join(10)
        holder.stop()
        database.dispose()
