"""What every page shares: the database, the model, the signed-in user, role checks, and the
widgets more than one page draws (the answer a link names, a run's live progress).

Pages stay thin: they read state and call core/orchestration/actions, then render; no page
imports db (an import-linter contract).
"""

from __future__ import annotations

import streamlit as st

from core.base.types import TokenTrace
from core.components.session_cookie import PENDING, cookie_half, read_browser_half, set_session_cookie
from core.orchestration.actions import account, shared
from core.orchestration.actions.acting import ROLE_PAGES, idle_limit
from core.orchestration.actions.acting import Actor as SignedIn
from core.orchestration.registry import LoadedProbe, load_version_or_none
from core.text.readable import fitted_widths

__all__ = ["ROLE_PAGES", "SignedIn"]


# This app navigates with st.navigation. Streamlit still has a legacy mode in which a folder
# named pages/ beside the entry point makes a first visit to /<page> run pages/<page>.py
# directly (until some run calls st.navigation). Turn that mode off as soon as any page is
# imported, so every later run goes through app.py (login, roles, sidebar).
def leave_legacy_pages_mode() -> None:
    """Turn Streamlit's legacy pages/ mode off; rerun once if this run was still in it,
    because widget ids differ between the two modes (a form filled in one would be lost)."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - a Streamlit without the flag
        return
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        if not _under_apptest():
            st.rerun()


def _under_apptest() -> bool:
    """AppTest resets the legacy flag before every run on its mocked runtime; a rerun there would
    drop the widget values the test just set."""
    from streamlit.runtime import Runtime

    return type(getattr(Runtime, "_instance", None)).__module__.startswith("unittest.mock")


@st.cache_resource(show_spinner=False)
def database():
    """One engine per server process; migrations run here, at start-up."""
    return shared.open_storage()


@st.cache_resource(show_spinner="Loading the language model…")
def language_model(model_id: str | None = None):
    """Loaded once per process and shared by all sessions (captures are thread-local)."""
    from core.engine.model import get_model

    return get_model(model_id)


def _cookie_token() -> str | None:
    """The sign-in token of a reload or a new tab: the cookie's half joined to the half this
    browser keeps in localStorage, which a script on another port cannot read (see
    core/components/session_cookie.py). Until the browser answers, the run stops here."""
    try:
        cookie = cookie_half(st.context.cookies)
    except Exception:
        return None
    if not cookie:
        return None
    browser = read_browser_half()
    if browser is PENDING:
        remember_wanted_page()  # this run ends before navigation: keep /annotate?generation=N
        st.caption("Restoring your sign-in…")
        st.stop()
    return cookie + browser if browser else None


def remember_wanted_page() -> None:
    """Keep the page and query the URL asked for, for a run that ends before navigation (the
    sign-in form, or waiting for the browser's token half); app.py restores them afterwards."""
    from urllib.parse import urlparse

    st.session_state.setdefault("wanted-page", urlparse(st.context.url or "").path.strip("/").split("/")[-1])
    st.session_state.setdefault("wanted-query", {k: st.query_params[k] for k in st.query_params})


def _has_cookie() -> bool:
    try:
        return cookie_half(st.context.cookies) is not None
    except Exception:
        return False


def _forget_session(reason: str | None) -> None:
    had_user = "user" in st.session_state
    for key in ("user", "session-token"):
        st.session_state.pop(key, None)
    st.session_state["cookie-clear"] = True
    if had_user and reason:
        st.session_state["signed-out-reason"] = reason


def current_user() -> SignedIn | None:
    """The signed-in person as the database says *now*: every run re-reads the session row and
    the account (one indexed query), so a role change, deactivation or revocation takes effect
    at the next click. The token comes from this browser session or, after a reload or in a
    new tab, from the cookie."""
    token = st.session_state.get("session-token") or _cookie_token()
    if not token:
        if st.session_state.pop("user", None) is not None or _has_cookie():
            _forget_session(None)  # a cookie without this browser's half: clear it
        return None
    signed = account.resolve(database(), token)
    if signed is None:
        _forget_session("Your session has ended (signed out, expired, or your account was changed). Sign in again.")
        return None
    st.session_state["session-token"] = token
    st.session_state["user"] = signed
    return signed


def sign_in(name: str, password: str) -> SignedIn:
    return remember(account.sign_in(database(), name, password))


def remember(signed: SignedIn) -> SignedIn:
    """Keep a new sign-in in this browser session (the cookie follows in `sync_cookie`)."""
    st.session_state["session-token"] = signed.token
    st.session_state["user"] = signed
    st.session_state.pop("cookie-clear", None)
    return signed


def sign_out(everywhere: bool = False) -> None:
    """End this sign-in (or every sign-in of this person) on the server, then forget it here."""
    token = st.session_state.get("session-token")
    signed = st.session_state.get("user")
    account.sign_out(database(), token, signed.id if signed is not None else None, everywhere=everywhere)
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    st.session_state["cookie-clear"] = True


def sync_cookie() -> None:
    """Keep the browser's cookie in step with this session (set after sign-in, cleared after sign-out)."""
    token = st.session_state.get("session-token")
    if token and "user" in st.session_state:
        set_session_cookie(token, int(idle_limit().total_seconds()))
    elif st.session_state.pop("cookie-clear", False):
        set_session_cookie(None, 0)


def allowed(page: str, user: SignedIn | None = None) -> bool:
    user = user or current_user()
    return user is not None and page in ROLE_PAGES.get(user.role, ())


def require_page(page: str) -> SignedIn:
    """Stop the page (showing a refusal and nothing else) unless the user may open it."""
    leave_legacy_pages_mode()
    user = current_user()
    if user is None and not st.session_state.get("rerouted-through-app"):
        # Reached without app.py (the legacy pages/ mode above): go round again through it,
        # which asks to sign in and then checks this page against the role.
        st.session_state["rerouted-through-app"] = True
        st.rerun()
    if user is None or not allowed(page, user):
        st.error(
            "Sign in to open this page."
            if user is None
            else f"Your role ({user.role}) does not have access to this page."
        )
        st.stop()
    st.session_state["current-page"] = page
    return user


def probe_versions() -> list[int]:
    """Versions of every registered probe, newest first."""
    return shared.probe_versions(database())


def active_probe(version: int | None = None) -> LoadedProbe | None:
    """The active probe (or `version`) for the loaded model; None if none fits it."""
    return load_version_or_none(database(), language_model(), version)


def linked_answer(unknown_note: str) -> int | None:
    """The stored answer the page's `?generation=N` link names, or None (with a warning ending in
    `unknown_note` when the link names none: links are typed by anyone)."""
    wanted = st.query_params.get("generation")
    found = shared.linked_answer(database(), wanted)
    if wanted and found is None:
        st.warning("That link names no stored answer" + unknown_note)
    return found


def trace_or_tokenise(generation_id: int, trace: TokenTrace | None) -> TokenTrace:
    """An answer imported without tokens is tokenised (and stored) once, when first opened."""
    if trace is not None:
        return trace
    with st.spinner("This answer was imported without tokens: tokenising it once…"):
        return shared.trace_or_tokenise(database(), language_model(), generation_id, None)


def model_label() -> str:
    from core.engine.model import resolve_model_id

    return resolve_model_id(None)


def open_flag_count() -> int:
    return shared.open_flag_count(database())


def active_probe_summary() -> str:
    return shared.active_probe_summary(database())


def fitted_columns(rows: list[dict], numbers: tuple[str, ...] = (), helps: dict[str, str] | None = None) -> dict:
    """`column_config` for a table of `rows` whose columns are wide enough for their header and
    longest value (no column cut off); `numbers` are shown with three decimals."""
    config = {}
    for column, width in fitted_widths(rows).items():
        helped = (helps or {}).get(column)
        if column in numbers:
            config[column] = st.column_config.NumberColumn(column, format="%.3f", width=width, help=helped)
        else:
            config[column] = st.column_config.Column(column, width=width, help=helped)
    return config
