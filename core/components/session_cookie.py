"""The sign-in cookie and its second half in the browser, set from the page (Streamlit serves no
HTTP response we could add a cookie to).

A sign-in token is split in two (`split_token`): the first half is the cookie, the second is
kept in the browser's `localStorage`. Cookies are not isolated by port, so a script running on
another port of the same host (a Jupyter, a dashboard) reads the cookie; `localStorage` belongs
to one origin (scheme, host *and port*), so that script cannot read the second half, and the
cookie alone opens nothing. A reload or a new tab sends the cookie with the request; the page
then asks the browser for the second half (`read_browser_half`, one extra run) before it knows
who is signed in. Over HTTPS the cookie is named `__Host-probelens_session` (`Secure`, `Path=/`,
no `Domain`: no other host or plain-HTTP page can set or overwrite it); over plain HTTP, where
browsers refuse that prefix, `probelens_session`. Both are `SameSite=Strict` and hold only
random text (never the name or role). The server-side session row decides; Max-Age is a
convenience.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

COOKIE_NAME = "probelens_session"
HOST_COOKIE_NAME = "__Host-" + COOKIE_NAME
STORAGE_KEY = "probelens_session_half"
PENDING = None  # read_browser_half: the browser has not answered yet

_JS = """
export default function sessionCookie(component) {
  const d = component.data || {};
  const https = window.location.protocol === "https:";
  const name = https ? "__Host-" + d.name : d.name;
  const base = "; Path=/; SameSite=Strict" + (https ? "; Secure" : "");
  if (d.mode === "read") {
    let half = "";
    try { half = window.localStorage.getItem(d.storage_key) || ""; } catch (e) { half = ""; }
    component.setStateValue("half", half);
    return;
  }
  if (d.token) {
    document.cookie = name + "=" + encodeURIComponent(d.token) + "; Max-Age=" + d.max_age + base;
    try { window.localStorage.setItem(d.storage_key, d.half); } catch (e) { /* then reloads sign in again */ }
  } else {
    document.cookie = name + "=; Max-Age=0" + base;
    try { window.localStorage.removeItem(d.storage_key); } catch (e) { /* nothing kept */ }
  }
}
"""


@lru_cache(maxsize=1)
def _component():
    import streamlit as st

    return st.components.v2.component("probelens_session_cookie", html="<span hidden></span>", js=_JS)


def split_token(token: str) -> tuple[str, str]:
    """(the cookie's half, the browser storage's half) of a sign-in token."""
    middle = len(token) // 2
    return token[:middle], token[middle:]


def cookie_half(cookies: Mapping[str, str]) -> str | None:
    """The token half this request's cookies carry: the `__Host-` cookie when present."""
    for name in (HOST_COOKIE_NAME, COOKIE_NAME):
        value = cookies.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def set_session_cookie(token: str | None, max_age_seconds: int, key: str = "session-cookie") -> None:
    """Set (a token: its halves to the cookie and to localStorage) or clear (None) both."""
    cookie, half = split_token(token or "")
    data = {"name": COOKIE_NAME, "storage_key": STORAGE_KEY, "token": cookie, "half": half}
    _component()(key=key, data={**data, "max_age": int(max_age_seconds)}, height=0)


def read_browser_half(key: str = "session-half") -> str | None:
    """The token half this browser keeps ("" when it keeps none), or PENDING (None) until the
    browser has answered: the component reports it and Streamlit runs the script again."""
    result: Any = _component()(
        key=key,
        data={"mode": "read", "storage_key": STORAGE_KEY},
        height=0,
        on_half_change=lambda: None,
    )
    half = getattr(result, "half", None)
    return half if isinstance(half, str) else PENDING
