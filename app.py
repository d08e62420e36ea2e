"""ProbeLens entry point: first-run set-up, login gate, role-aware navigation."""

from __future__ import annotations

import logging
import uuid

import streamlit as st

from core.base import settings
from core.base.errors import UserError
from core.orchestration.actions import account
from core.text.markdown import md_escape
from pages.common import (
    ROLE_PAGES,
    allowed,
    current_user,
    database,
    leave_legacy_pages_mode,
    model_label,
    remember,
    remember_wanted_page,
    sign_in,
    sign_out,
    sync_cookie,
)

log = logging.getLogger("probelens")

st.set_page_config(page_title="ProbeLens", page_icon=":material/search:", layout="wide")
leave_legacy_pages_mode()

PAGES = {
    "generate": st.Page(
        "pages/generate.py", title="Generate", icon=":material/edit_note:", url_path="generate", default=True
    ),
    "annotate": st.Page("pages/annotate.py", title="Annotate", icon=":material/label:", url_path="annotate"),
    "review": st.Page("pages/review.py", title="Review", icon=":material/balance:", url_path="review"),
    "inspect": st.Page("pages/inspect.py", title="Inspect", icon=":material/biotech:", url_path="inspect"),
    "probes": st.Page("pages/probes.py", title="Probes", icon=":material/science:", url_path="probes"),
    "data": st.Page("pages/data.py", title="Data", icon=":material/folder_open:", url_path="data"),
    "users": st.Page("pages/users.py", title="Users", icon=":material/group:", url_path="users"),
}


def needs_first_admin() -> bool:
    """No active admin yet and none to create from PROBELENS_ADMIN_PASSWORD."""
    return account.needs_first_admin(database())


def first_run_setup() -> None:
    """Ask once for the admin password. The form lives in one placeholder, replaced by a plain
    note once the account exists: the next run loads the model, and meanwhile the browser would
    otherwise keep a greyed copy of the form (and of any earlier error) on screen."""
    holder = st.empty()
    with holder.container():
        st.title("Welcome to ProbeLens")
        st.write("Choose the password of the **admin** account. You will use it to sign in and to add your team.")
        with st.form("first-admin"):
            first = st.text_input(
                f"Admin password (at least {account.MIN_PASSWORD_LENGTH} characters)", type="password"
            )
            second = st.text_input("Repeat it", type="password")
            submitted = st.form_submit_button("Create the admin account")
        problem = None
        if submitted and first != second:
            problem = "The two passwords differ."
        elif submitted:
            try:
                # the person who chose it is the admin: signed in at once, no second form
                remember(account.create_first_admin(database(), first))
            except UserError as exc:
                problem = str(exc)
            else:
                holder.info("The admin account is ready: signing you in and loading the model…")
                st.rerun()
        if problem:
            st.error(md_escape(problem))


def login_form() -> None:
    st.title("ProbeLens")
    st.caption("Token-level hallucination probes: watch risk per token, correct spans, retrain.")
    reason = st.session_state.pop("signed-out-reason", None)
    if reason:
        st.info(reason)
    with st.form("login"):
        name = st.text_input("User name")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        try:
            sign_in(name, password)
            st.rerun()
        except UserError as exc:
            st.error(md_escape(str(exc)))


def sidebar(user) -> None:
    from pages.common import active_probe_summary, open_flag_count

    with st.sidebar:
        st.markdown("### ProbeLens")
        for key in ROLE_PAGES[user.role]:
            if key == "review" and (flags := open_flag_count()):
                # a badge: flags reach reviewers whichever page (and dataset) they are on
                st.page_link(PAGES[key], label=f"Review · {flags} ⚑", help=f"{flags} open flag(s) from annotators")
            else:
                st.page_link(PAGES[key])
        st.divider()
        st.markdown(f"**{md_escape(user.name)}** · {user.role}")
        st.caption(f"Model: {md_escape(model_label())}")
        st.caption(active_probe_summary())
        if st.button("Sign out", key="sign-out"):
            sign_out()
            st.rerun()
        if st.button(
            "Sign out everywhere",
            key="sign-out-everywhere",
            help="End this account's sign-ins in every browser and tab",
        ):
            sign_out(everywhere=True)
            st.rerun()
        sync_cookie()


# Before sign-in only the set-up or sign-in form runs (pages/common.py turns off Streamlit's
# legacy pages/ mode, which would otherwise run pages/<name>.py directly on a first visit).
if needs_first_admin():
    first_run_setup()
    st.stop()
user = current_user()
if user is None:
    remember_wanted_page()  # so /users is still checked (and refused) after login
    with st.sidebar:
        sync_cookie()  # clears the cookie of a session that has ended
    login_form()
    st.stop()
page = st.navigation(list(PAGES.values()), position="hidden")
sidebar(user)
page_key = next(k for k, p in PAGES.items() if p.url_path == page.url_path)
wanted = st.session_state.pop("wanted-page", "")
if wanted in PAGES and wanted != page_key:
    if allowed(wanted, user):
        st.switch_page(PAGES[wanted])  # drops query parameters: they are restored on the next run
    page_key, page = wanted, PAGES[wanted]
for name, value in st.session_state.pop("wanted-query", {}).items():
    if name not in st.query_params:
        st.query_params[name] = value  # e.g. ?generation=12 survives the sign-in
if not allowed(page_key, user):
    st.error(f"Your role ({user.role}) does not have access to the {page.title} page.")
    st.stop()
if settings.seed_demo_enabled():
    from pages.run_progress import seed_status

    seed_status(user)
try:
    page.run()
except Exception:
    incident = uuid.uuid4().hex[:8]
    log.exception("page %s failed (incident %s)", page_key, incident)
    st.error(f"Something went wrong on this page. It was logged on the server as incident {incident}.")
