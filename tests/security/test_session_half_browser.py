"""Issue #22, finding 10 in a real Chromium: the session cookie alone opens nothing.

Cookies are not isolated by port, so a script on another port of the same host (here a plain
page served on a second port) reads the session cookie. The token's second half lives in the
app origin's localStorage, which that page cannot read; a browser holding only the stolen cookie
gets the sign-in form, while the owner's reloads and new tabs stay signed in.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from core.components.session_cookie import COOKIE_NAME, STORAGE_KEY
from tests.support.apptest import add_users
from tests.support.browser import free_port, served_app, sign_in, wait_for_session_cookie

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    def prepare(database) -> None:
        add_users(database, ("boss", "boss-password", "admin"), ("bea", "bea-password", "annotator"))

    with served_app(tmp_path_factory.mktemp("served"), prepare) as served_parts:
        yield served_parts


@pytest.fixture()
def other_port() -> Iterator[str]:
    """A page on another port of the same host: the neighbour (a Jupyter, a dashboard)."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>neighbour</title><p>neighbour</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_stolen_cookie_alone_opens_no_session(page, served, chromium, other_port):
    app, _database, _url = served
    sign_in(page, app, "bea", "bea-password")
    cookie = wait_for_session_cookie(page)
    assert page.evaluate(f"() => window.localStorage.getItem({STORAGE_KEY!r})")
    # the neighbour on another port reads the cookie (no port isolation) but not the half
    neighbour = page.context.new_page()
    neighbour.goto(other_port)
    stolen = neighbour.evaluate("() => document.cookie")
    assert f"{COOKIE_NAME}=" in stolen
    assert neighbour.evaluate(f"() => window.localStorage.getItem({STORAGE_KEY!r})") is None
    # the owner: a reload and a new tab are still signed in
    page.reload()
    page.get_by_text("bea ·").wait_for(timeout=60_000)
    tab = page.context.new_page()
    tab.goto(app.url())
    tab.get_by_text("bea ·").wait_for(timeout=60_000)
    # the thief: another browser with the stolen cookie gets the sign-in form
    thief = chromium.new_context()
    try:
        thief.add_cookies([{**{k: cookie[k] for k in ("name", "value", "domain", "path")}, "sameSite": "Strict"}])
        other = thief.new_page()
        other.goto(app.url())
        other.get_by_label("User name").wait_for(timeout=30_000)
        other.wait_for_timeout(2_000)  # give a late sign-in every chance to appear
        assert other.get_by_text("bea ·").count() == 0
        assert other.get_by_label("User name").count() == 1
    finally:
        thief.close()
