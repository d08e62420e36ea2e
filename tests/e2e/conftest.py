"""Browser-test fixtures: a Streamlit test app in a subprocess and Debian's Chromium.

Chromium is /usr/bin/chromium driven by Python Playwright (never a browser downloaded by
a test tool). Tests are skipped with a clear reason when it is missing. On failure a
screenshot of the page is saved under tests/e2e/artifacts/. The helpers (StreamlitApp,
sign_in, CHROMIUM, ...) are in tests/support/browser.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.browser import CHROMIUM, NO_CHROMIUM, StreamlitApp

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
