"""The sign-in cookie, set from the page (Streamlit serves no HTTP response we could add it to).

It holds only a random session token (never the name or role), `SameSite=Strict`, `Secure`
over HTTPS, and is readable by page scripts: that is why every shown string is escaped and
model output is drawn with `textContent` only. The server-side session row decides; the
cookie's Max-Age is a convenience.
"""

from __future__ import annotations

from functools import lru_cache

COOKIE_NAME = "probelens_session"

_JS = """
export default function sessionCookie(component) {
  const d = component.data || {};
  const secure = window.location.protocol === "https:" ? "; Secure" : "";
  const base = "; Path=/; SameSite=Strict" + secure;
  if (d.token) {
    document.cookie = d.name + "=" + encodeURIComponent(d.token) + "; Max-Age=" + d.max_age + base;
  } else {
    document.cookie = d.name + "=; Max-Age=0" + base;
  }
}
"""


@lru_cache(maxsize=1)
def _component():
    import streamlit as st

    return st.components.v2.component("probelens_session_cookie", html="<span hidden></span>", js=_JS)


def set_session_cookie(token: str | None, max_age_seconds: int, key: str = "session-cookie") -> None:
    """Set (a token) or clear (None) the cookie in this browser."""
    _component()(key=key, data={"name": COOKIE_NAME, "token": token or "", "max_age": int(max_age_seconds)}, height=0)
