"""`python -m core serve` as a real process for tests: started on a free port, its stderr in a file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

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
