"""Issue #22, finding 10 without a browser: how the token is split and which cookie is read
(the Chromium side is test_session_half_browser.py)."""

from __future__ import annotations

from datetime import timedelta
from unittest.mock import MagicMock

from core.components.session_cookie import _JS, COOKIE_NAME, HOST_COOKIE_NAME, cookie_half, split_token
from db.models import User
from db.sessions import create_session, resolve


def test_each_half_of_a_new_token_is_a_secret_on_its_own(sqlite_db):
    with sqlite_db.sessions() as session, session.begin():
        user = User(name="bea", name_key="bea", password_hash="-", role="annotator")
        session.add(user)
        session.flush()
        token = create_session(session, user)
    cookie, browser = split_token(token)
    assert cookie + browser == token and min(len(cookie), len(browser)) >= 40
    with sqlite_db.sessions() as session, session.begin():
        assert resolve(session, token, timedelta(hours=1)).name == "bea"
        assert resolve(session, cookie, timedelta(hours=1)) is None
        assert resolve(session, browser, timedelta(hours=1)) is None


def test_the_host_prefixed_cookie_wins_and_odd_values_are_ignored():
    assert cookie_half({HOST_COOKIE_NAME: "host-half", COOKIE_NAME: "tossed"}) == "host-half"
    assert cookie_half({COOKIE_NAME: "plain"}) == "plain"
    assert cookie_half({}) is None and cookie_half({COOKIE_NAME: ""}) is None
    assert cookie_half(MagicMock()) is None  # AppTest's stand-in context


def test_over_https_the_cookie_is_host_prefixed_secure_and_has_no_domain():
    assert HOST_COOKIE_NAME == "__Host-probelens_session"
    assert '"__Host-" + d.name' in _JS and '"; Secure"' in _JS and "Domain" not in _JS
