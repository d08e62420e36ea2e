"""What every page shares: the database, the model, the signed-in user, role checks.

Pages stay thin: they read state here, call core/ and db/, and render.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import streamlit as st

from core.base.errors import UserError

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


@st.cache_resource(show_spinner=False)
def load_probe_dir(path: str, model_id: str, tokenizer_hash: str, hidden_size: int):
    from core.probes.files import load_probe

    return load_probe(path, expect_model_id=model_id, expect_tokenizer_hash=tokenizer_hash,
                      expect_hidden_size=hidden_size)


def current_user() -> SignedIn | None:
    return st.session_state.get("user")


def sign_in(name: str, password: str) -> SignedIn:
    from db.users import login

    user = login(database(), name, password)
    signed = SignedIn(user.id, user.name, user.role)
    st.session_state["user"] = signed
    return signed


def sign_out() -> None:
    for key in list(st.session_state.keys()):
        del st.session_state[key]


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
        st.error("You do not have access to this page.")
        st.stop()
    return user


def db_user(session, signed: SignedIn):
    from db.models import User

    user = session.get(User, signed.id)
    if user is None or not user.active:
        raise UserError("your account is no longer active")
    return user


def probe_versions() -> list[int]:
    """Versions of every registered probe, newest first."""
    from db.probes import list_probes

    with database().sessions() as session:
        return [p.version for p in list_probes(session)]


def active_probe(version: int | None = None):
    """(probe, config, version) of the active probe (or of `version`) for the loaded model, or None."""
    from db.probes import active_probe as find_active
    from db.probes import get_probe

    with database().sessions() as session:
        record = get_probe(session, version) if version is not None else find_active(session)
        if record is None:
            return None
        path, version = record.artifact_path, record.version
    lm = language_model()
    try:
        probe, config = load_probe_dir(path, lm.model_id, lm.tokenizer_hash, lm.hidden_size)
    except UserError:
        return None
    return probe, config, version


def model_label() -> str:
    from core.engine.model import resolve_model_id

    return resolve_model_id(os.environ.get("PROBELENS_MODEL"))


def active_probe_summary() -> str:
    from db.probes import active_probe as find_active

    with database().sessions() as session:
        record = find_active(session)
        if record is None:
            return "Active probe: none yet"
        auc = (record.metrics or {}).get("span_max", {}).get("auc")
        auc_text = f", span AUC {auc:.2f}" if isinstance(auc, (int, float)) else ""
        return f"Active probe: v{record.version} (layer {record.layer}{auc_text})"


def _start_seed_if_needed():
    """The first run seeds the demo once per server process, in the background."""
    from core.orchestration.jobs import RUNNER
    from core.orchestration.seed import needs_seed, seed_demo

    job = RUNNER.latest("seed")
    if job is not None or not needs_seed(database()):
        return job
    db, lm = database(), language_model()
    return RUNNER.start("seed", lambda progress, cancel: seed_demo(db, lm, progress=progress, cancel=cancel),
                        label="demo data")


def seed_status(user: SignedIn) -> None:
    """A small live progress box in the sidebar while the demo seed runs."""
    job = _start_seed_if_needed()
    if job is None:
        return

    @st.fragment(run_every=1.0 if job.running else None)
    def box() -> None:
        with st.sidebar:
            if job.running:
                st.caption(f"Preparing demo data: {job.stage} {job.done}/{job.total}")
                st.progress(job.fraction)
                if user.role == "admin" and st.button("Cancel demo seeding", key="cancel-seed"):
                    job.cancel()
            elif job.status == "failed":
                st.warning(f"Demo seeding failed: {job.error}")
            elif job.status == "succeeded" and not st.session_state.get("seed-announced"):
                st.session_state["seed-announced"] = True
                st.success("Demo data and a demo probe are ready.")

    box()
