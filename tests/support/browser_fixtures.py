"""Pytest fixtures for browser tests (tests/conftest.py imports them): one Chromium per session,
a fresh page per test with its page errors collected and a screenshot saved on failure, and one
demo seeded with the embedded model per session for the apps that start from it."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.support.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, NO_CHROMIUM, seed_demo_once


@pytest.fixture(scope="session")
def chromium():
    if not Path(CHROMIUM).exists():
        pytest.skip(NO_CHROMIUM)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def page(chromium, request):
    """A fresh page; page errors are collected in `page.errors`; screenshot on failure."""
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    pg = context.new_page()
    pg.errors = []  # type: ignore[attr-defined]
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))  # type: ignore[attr-defined]
    yield pg
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid.split("::")[-1])
        try:
            pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        except Exception as exc:
            print(f"screenshot failed: {exc}")
    context.close()


@pytest.fixture(scope="session")
def demo_seeded(tmp_path_factory) -> Path:
    """A folder holding a seeded demo (9 answers, an active probe, the activation cache): pass
    it to `served_app(..., start_from=...)`, which serves a copy, so each app changes only its own.
    Under pytest-xdist the workers share one seed: the first to ask seeds it under a file lock in
    the run's shared temporary folder, the others wait and read it."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return seed_demo_once(tmp_path_factory.mktemp("demo-seeded"))
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent / "demo-seeded"
    with FileLock(f"{shared}.lock"):
        if not (shared / "seeded").exists():
            shutil.rmtree(shared, ignore_errors=True)  # a worker that died half-way
            shared.mkdir()
            seed_demo_once(shared)
            (shared / "seeded").touch()
    return shared
