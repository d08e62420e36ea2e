"""Browser-test fixtures: a Streamlit test app in a subprocess and Debian's Chromium.

Chromium is /usr/bin/chromium driven by Python Playwright (never a browser downloaded by
a test tool). Tests are skipped with a clear reason when it is missing. On failure a
screenshot of the page is saved under tests/e2e/artifacts/. The helpers (StreamlitApp,
sign_in, CHROMIUM, ...) are in tests/support/browser.py.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

# The helpers live in tests/support/browser.py; these names stay importable from here for
# scripts that still do `from conftest import CHROMIUM, CHROMIUM_ARGS, StreamlitApp`
# (benchmarks/heatmap_render.py, benchmarks/annotate_ui.py). Tests import tests.support.browser.
from tests.support.browser import (  # noqa: F401 - re-exported
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    NO_CHROMIUM,
    ROOT,
    StreamlitApp,
    free_port,
)

HERE = Path(__file__).resolve().parent

if str(HERE) not in sys.path:  # heatmap_cases: data shared with the test app
    sys.path.insert(0, str(HERE))


@pytest.fixture(scope="session")
def heatmap_app():
    if not Path(CHROMIUM).exists():
        pytest.skip(NO_CHROMIUM)
    app = StreamlitApp(HERE / "heatmap_app.py")
    try:
        app.wait_ready()
        yield app
    finally:
        app.stop()


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


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


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
        except Exception as exc:  # noqa: BLE001 - a failed screenshot must not hide the failure
            print(f"screenshot failed: {exc}")
    context.close()
