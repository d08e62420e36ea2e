"""Browser-test helpers: a Streamlit app in a subprocess, Debian's Chromium, signing in.

Chromium is /usr/bin/chromium driven by Python Playwright (never a browser downloaded by a
test tool). The fixtures built on these (chromium, page, heatmap_app) are in
tests/e2e/conftest.py; benchmarks import from here too.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
E2E = ROOT / "tests" / "e2e"
ARTIFACTS = E2E / "artifacts"  # server logs and failure screenshots
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NO_CHROMIUM = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run browser tests"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamlitApp:
    """`streamlit run <script>` on a free port; `url(...)` builds page addresses."""

    def __init__(self, script: Path, extra_args: list[str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = ARTIFACTS / f"{script.stem}.log"  # the latest run's server log
        ARTIFACTS.mkdir(exist_ok=True)
        self._log = open(self.log_path, "w")
        cmd = [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(script),
            "--server.headless",
            "true",
            "--server.port",
            str(self.port),
            "--browser.gatherUsageStats",
            "false",
            *(extra_args or []),
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.base}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"streamlit not ready after {timeout:.0f}s:\n{self.log()}")

    def url(self, **params: object) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"{self.base}/?{query}" if query else f"{self.base}/"

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def sign_in(page, app: StreamlitApp, name: str, password: str) -> None:
    """Open the app's front page in a Playwright `page`, sign in, and wait for the signed-in sidebar."""
    page.goto(app.url())
    page.get_by_label("User name").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"{name} ·").wait_for(timeout=60_000)
    wait_for_session_cookie(page)


def wait_for_session_cookie(page, timeout_s: float = 15.0) -> dict:
    """The sign-in cookie, once the page has set it (just after the signed-in sidebar is drawn):
    a navigation before that would find no sign-in."""
    from core.components.session_cookie import COOKIE_NAME

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [c for c in page.context.cookies() if c["name"] == COOKIE_NAME]
        if found:
            return found[0]
        page.wait_for_timeout(100)
    raise AssertionError("the page set no session cookie")


DB_FILE = "probelens.db"


def _app_environment(mp: pytest.MonkeyPatch, tmp: Path, model: str | None, url: str | None = None) -> str:
    """The environment of an app on `tmp`: its database (a SQLite file there, or `url`), probes
    and cache folders, the shared de-quantised model (or `model`), no demo seed. Returns the
    database URL."""
    url = url or f"sqlite:///{tmp / DB_FILE}"
    mp.setenv("DATABASE_URL", url)
    mp.setenv("PROBELENS_PROBES_DIR", str(tmp / "probes"))
    mp.setenv("PROBELENS_CACHE_DIR", str(tmp / "cache"))
    mp.setenv("PROBELENS_MODEL_CACHE_DIR", str(ROOT / "data" / "cache" / "models"))
    mp.setenv("PROBELENS_SEED_DEMO", "0")
    if model is None:
        mp.delenv("PROBELENS_MODEL", raising=False)  # the embedded model
    else:
        mp.setenv("PROBELENS_MODEL", model)
    return url


def seed_demo_once(folder: Path, size: int = 9) -> Path:
    """A demo (answers with their scores, an active probe, the activation cache) seeded with the
    embedded model into `folder`, for `served_app(..., start_from=folder)` to copy: the browser
    tests that need a demo share one seed instead of generating it per module."""
    from core.engine.model import get_model
    from core.orchestration.seed import seed_demo
    from db import open_database

    with pytest.MonkeyPatch.context() as mp:
        database = open_database(_app_environment(mp, folder, None))
        try:
            seed_demo(database, get_model(None), size=size)
        finally:
            database.dispose()
    return folder


def _copy_start(start_from: Path, tmp: Path) -> None:
    """The seeded database file (and any WAL beside it) and activation cache, copied to `tmp`."""
    for path in start_from.glob(DB_FILE + "*"):
        shutil.copy2(path, tmp / path.name)
    if (start_from / "cache").is_dir():
        shutil.copytree(start_from / "cache", tmp / "cache")


@contextmanager
def served_app(
    tmp: Path,
    prepare: Callable[[Any], None] | None = None,
    *,
    model: str | None = None,
    start_from: Path | None = None,
    database_url: str | None = None,
) -> Iterator[tuple[StreamlitApp, Any, str]]:
    """ProbeLens served on a fresh SQLite file under `tmp` (or a copy of `start_from`'s, made by
    `seed_demo_once`; or the migrated database at `database_url`, e.g. the `pg_db` fixture's
    PostgreSQL schema): its own probes and cache folders, the shared de-quantised model (or
    `model`, e.g. the tiny test model's folder), no demo seed. `prepare(database)` fills it
    before the server starts. Yields (app, database, url); everything is stopped afterwards."""
    from db import open_database

    if start_from is not None:
        _copy_start(start_from, tmp)
    with pytest.MonkeyPatch.context() as mp:
        url = _app_environment(mp, tmp, model, database_url)
        database = open_database(url)
        try:
            if prepare is not None:
                prepare(database)
            app = StreamlitApp(ROOT / "app.py")
            try:
                app.wait_ready(timeout=90)
                yield app, database, url
            finally:
                app.stop()
        finally:
            database.dispose()


def submit_add_user(page, name: str, password: str) -> None:
    """On the open Users page, fill the "Add a user" form and press Add (one field at a time,
    each confirmed with Tab, so a rerun cannot drop what was typed)."""
    form = page.locator('[data-testid="stForm"]').first
    for label, value in (("Name", name), ("Password (8+ characters)", password)):
        box = form.get_by_label(label)
        box.fill(value)
        box.press("Tab")
        page.wait_for_timeout(300)
    form.get_by_role("button", name="Add").click()
