"""What every page shares: the database, the model, the signed-in user, role checks.

Pages stay thin: they read state here, call core/ and db/, and render.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import streamlit as st

from core.base import settings
from core.base.errors import UserError
from core.base.types import TokenTrace
from core.components.session_cookie import COOKIE_NAME, set_session_cookie
from core.orchestration.registry import LoadedProbe, load_version_or_none
from core.orchestration.rescore import tokenise_answer
from core.orchestration.seed import needs_seed, start_seed
from core.probes.stored_metrics import headline_auc
from core.text.markdown import md_escape
from db.models import Generation, RunKind, RunStatus, User
from db.sessions import create_session, revoke_all
from db.sessions import peek as peek_session
from db.sessions import resolve as resolve_session
from db.sessions import revoke as revoke_session
from db.train_runs import describe, get_run, latest_run, request_cancel
from db.users import login


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


# Which pages each role may open (the navigation shows only these).
ROLE_PAGES: dict[str, tuple[str, ...]] = {
    "annotator": ("generate", "annotate"),
    "reviewer": ("generate", "annotate", "review", "inspect"),
    "admin": ("generate", "annotate", "review", "inspect", "probes", "data", "users"),
}


@dataclass(frozen=True)
class SignedIn:
    id: int
    name: str
    role: str


@st.cache_resource(show_spinner=False)
def database():
    """One engine per server process; migrations run here, at start-up."""
    from db import open_database

    return open_database()


@st.cache_resource(show_spinner="Loading the language model…")
def language_model(model_id: str | None = None):
    """Loaded once per process and shared by all sessions (captures are thread-local)."""
    from core.engine.model import get_model

    return get_model(model_id)


def _idle() -> timedelta:
    return timedelta(hours=settings.session_idle_hours())


def _cookie_token() -> str | None:
    try:
        return st.context.cookies.get(COOKIE_NAME)
    except Exception:  # noqa: BLE001 - no browser behind this run (AppTest, bare mode)
        return None


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
        st.session_state.pop("user", None)
        return None
    storage = database()
    with storage.reading() as session:  # most runs only read: no write lock
        user, must_write = peek_session(session, token, _idle())
        signed = SignedIn(user.id, user.name, user.role) if user is not None else None
    if must_write:  # the visit is recorded (at most once a minute) or the idle session ended
        with storage.sessions() as session, session.begin():
            user = resolve_session(session, token, _idle())
            signed = SignedIn(user.id, user.name, user.role) if user is not None else None
    if signed is None:
        _forget_session("Your session has ended (signed out, expired, or your account was changed). Sign in again.")
        return None
    st.session_state["session-token"] = token
    st.session_state["user"] = signed
    return signed


def sign_in(name: str, password: str) -> SignedIn:
    user = login(database(), name, password)
    with database().sessions() as session, session.begin():
        token = create_session(session, session.get(User, user.id))
    signed = SignedIn(user.id, user.name, user.role)
    st.session_state["session-token"] = token
    st.session_state["user"] = signed
    st.session_state.pop("cookie-clear", None)
    return signed


def sign_out(everywhere: bool = False) -> None:
    """End this sign-in (or every sign-in of this person) on the server, then forget it here."""
    token = st.session_state.get("session-token")
    signed = st.session_state.get("user")
    with database().sessions() as session, session.begin():
        if everywhere and signed is not None:
            revoke_all(session, signed.id, "signed out everywhere")
        else:
            revoke_session(session, token)
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    st.session_state["cookie-clear"] = True


def sync_cookie() -> None:
    """Keep the browser's cookie in step with this session (set after sign-in, cleared after sign-out)."""
    token = st.session_state.get("session-token")
    if token and "user" in st.session_state:
        set_session_cookie(token, int(_idle().total_seconds()))
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


def db_user(session, signed: SignedIn):
    """The acting account, re-read inside the action's own transaction: it must still be active
    and its role must still allow the page the action comes from (callbacks run before the
    page's own check, so this is checked again here)."""
    user = session.get(User, signed.id)
    if user is None or not user.active:
        raise UserError("your account is no longer active")
    page = st.session_state.get("current-page")
    if page is not None and page not in ROLE_PAGES.get(user.role, ()):
        raise UserError(f"your role ({user.role}) no longer allows this")
    return user


def probe_versions() -> list[int]:
    """Versions of every registered probe, newest first."""
    from db.probes import list_probes

    with database().sessions() as session:
        return [p.version for p in list_probes(session)]


def active_probe(version: int | None = None) -> LoadedProbe | None:
    """The active probe (or `version`) for the loaded model; None if none fits it."""
    return load_version_or_none(database(), language_model(), version)


def generation_exists(generation_id: int) -> bool:
    """Whether a `?generation=N` link points at a stored answer (links are typed by anyone)."""
    with database().sessions() as session:
        return session.get(Generation, generation_id) is not None


def trace_or_tokenise(generation_id: int, trace: TokenTrace | None) -> TokenTrace:
    """An answer imported without tokens is tokenised (and stored) once, when first opened."""
    if trace is not None:
        return trace
    with st.spinner("This answer was imported without tokens: tokenising it once…"):
        return tokenise_answer(database(), language_model(), generation_id)


def model_label() -> str:
    from core.engine.model import resolve_model_id

    return resolve_model_id(None)


def active_probe_summary() -> str:
    from db.probes import active_probe as find_active

    with database().sessions() as session:
        record = find_active(session)
        if record is None:
            return "Active probe: none yet"
        auc = headline_auc(record.metrics)
        auc_text = f", span AUC {auc:.2f}" if isinstance(auc, (int, float)) else ""
        return f"Active probe: v{record.version} (layer {record.layer}{auc_text})"


def _seed_run() -> int | None:
    """The demo seed's run: started by the first page view that finds no demo data, then only read.

    A failed or cancelled seed is not retried on its own; an admin can start it again."""
    storage = database()
    with storage.sessions() as session:
        latest = latest_run(session, RunKind.SEED)
    if latest is not None:
        return latest.id
    if not needs_seed(storage):
        return None
    try:
        return start_seed(storage)
    except UserError:  # another session started it a moment ago
        with storage.sessions() as session:
            latest = latest_run(session, RunKind.SEED)
        return latest.id if latest else None


def seed_status(user: SignedIn) -> None:
    """A small live progress box in the sidebar while the demo seed runs (read from its run row)."""
    run_id = _seed_run()
    if run_id is None:
        return
    with database().sessions() as session:
        running = get_run(session, run_id).status in (RunStatus.QUEUED, RunStatus.RUNNING)

    @st.fragment(run_every=1.0 if running else None)
    def box() -> None:
        storage = database()
        with storage.sessions() as session:
            run = describe(get_run(session, run_id))
        with st.sidebar:
            if run["status"] in (RunStatus.QUEUED, RunStatus.RUNNING):
                st.caption(f"Preparing demo data: {md_escape(run['message'] or run['status'])}")
                st.progress(min(1.0, float(run["progress"] or 0.0)))
                if user.role == "admin" and st.button("Cancel demo seeding", key="cancel-seed"):
                    with storage.sessions() as session, session.begin():
                        request_cancel(session, run_id, db_user(session, user))
            elif run["status"] in (RunStatus.FAILED, RunStatus.CANCELLED) and needs_seed(storage):
                st.warning(f"Demo seeding {run['status']}" + (f": {md_escape(run['error'])}" if run["error"] else "."))
                if user.role == "admin" and st.button("Start demo seeding again", key="retry-seed"):
                    try:
                        start_seed(storage, user.id)
                    except UserError as exc:
                        st.error(md_escape(str(exc)))
                    st.rerun()
            elif run["status"] == RunStatus.SUCCEEDED and running and not st.session_state.get("seed-announced"):
                st.session_state["seed-announced"] = True  # this session saw it run: say once that it is done
                st.success("Demo data and a demo probe are ready.")

    box()
