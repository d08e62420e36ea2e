"""Users (admin): accounts, the event log, and team progress."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pandas as pd
import streamlit as st

from core.base.errors import UserError
from core.text.markdown import md_escape
from core.text.readable import readable, readable_table
from core.text.spreadsheet import spreadsheet_safe
from pages.common import database, db_user, require_page

user = require_page("users")
st.title("Users")

from core.orchestration.team import TEAM_COLUMNS, team_progress  # noqa: E402
from db import users as accounts  # noqa: E402
from db.events import list_events  # noqa: E402
from db.generations import list_datasets  # noqa: E402

storage = database()
tab_accounts, tab_events, tab_team = st.tabs(["Accounts", "Event log", "Team progress"])


def run_change(action, *args, success: str) -> None:
    """Apply one account change in its own transaction; show one clear message either way."""
    try:
        with storage.sessions() as session, session.begin():
            action(session, *args, actor=db_user(session, user))
        st.success(success)
    except UserError as exc:
        st.error(md_escape(str(exc)))


with tab_accounts:
    with storage.sessions() as session:
        people = accounts.list_users(session)
        rows = [{"name": u.name, "role": u.role, "active": u.active, "created": u.created_at} for u in people]
        names = [u.name for u in people]
    st.dataframe(spreadsheet_safe(pd.DataFrame(rows)), hide_index=True, width="stretch")

    with st.form("add-user", clear_on_submit=True):
        st.subheader("Add a user")
        c1, c2, c3 = st.columns(3)
        name = c1.text_input("Name")
        role = c2.selectbox("Role", ["annotator", "reviewer", "admin"])
        password = c3.text_input("Password (8+ characters)", type="password")
        if st.form_submit_button("Add"):
            try:
                with storage.sessions() as session, session.begin():
                    accounts.add_user(session, name, password, role=role, actor=db_user(session, user))
                st.success(f"Added {md_escape(name)} ({role}).")
                st.rerun()
            except UserError as exc:
                st.error(md_escape(str(exc)))

    st.subheader("Change a user")
    target = st.selectbox("User", names, key="users-target")
    c1, c2, c3 = st.columns(3)
    new_role = c1.selectbox("New role", ["annotator", "reviewer", "admin"], key="users-role")
    if c1.button("Change role", key="users-set-role"):
        run_change(accounts.set_role, target, new_role, success=f"{target} is now {new_role}.")
    if c2.button("Deactivate", key="users-deactivate"):
        run_change(accounts.deactivate, target, success=f"{target} is deactivated.")
    if c2.button("Reactivate", key="users-reactivate"):
        run_change(accounts.reactivate, target, success=f"{target} is active again.")
    new_password = c3.text_input("New password", type="password", key="users-new-password")
    if c3.button("Reset password", key="users-reset"):
        run_change(accounts.reset_password, target, new_password, success=f"Password of {target} reset.")

with tab_events:
    with storage.sessions() as session:
        people = {u.name: u.id for u in accounts.list_users(session)}
        datasets = [d["name"] for d in list_datasets(session)]
    c1, c2, c3, c4 = st.columns(4)
    who = c1.selectbox("User", [None, *people], format_func=lambda n: n or "anyone", key="ev-user")
    action = c2.text_input("Action (e.g. annotation.save)", key="ev-action") or None
    dataset = c3.selectbox("Dataset", [None, *datasets], format_func=lambda d: d or "any", key="ev-dataset")
    since = c4.date_input("Since", value=None, key="ev-since")
    with storage.sessions() as session:
        events = list_events(
            session,
            user_id=people.get(who) if who else None,
            action=action,
            dataset=dataset,
            since=datetime.combine(since, time.min, tzinfo=UTC) if since else None,
            limit=500,
        )
        names = {v: k for k, v in people.items()}
        table = pd.DataFrame(
            [
                {
                    "when": e.at,
                    "user": names.get(e.user_id, "system"),
                    "action": e.action,
                    "entity": e.entity,
                    "id": e.entity_id,
                    "dataset": e.dataset,
                    "detail": e.detail,
                    "before": readable(e.before) if e.before is not None else "",
                    "after": readable(e.after) if e.after is not None else "",
                }
                for e in events
            ]
        )
    st.dataframe(spreadsheet_safe(table), hide_index=True, width="stretch", height=480)

with tab_team:
    with storage.sessions() as session:
        datasets = [d["name"] for d in list_datasets(session)]
    dataset = st.selectbox(
        "Agreement with gold on dataset", [None, *datasets], format_func=lambda d: d or "—", key="team-dataset"
    )
    with storage.sessions() as session:
        st.dataframe(
            spreadsheet_safe(pd.DataFrame(readable_table(team_progress(session, dataset), TEAM_COLUMNS, 2))),
            hide_index=True,
            width="stretch",
        )
    st.caption(
        "Median time per item: the median gap between a person's consecutive saves, ignoring pauses "
        "over 30 minutes. κ vs gold: token-level Cohen's kappa against the gold set."
    )
