"""Users (admin): accounts, the event log, and team progress."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pandas as pd
import streamlit as st

from core.base.errors import UserError
from core.text.markdown import md_escape
from core.text.readable import readable, readable_lines, readable_table
from core.text.spreadsheet import spreadsheet_safe
from pages.common import database, require_page

user = require_page("users")
st.title("Users")

from core.orchestration.actions import shared
from core.orchestration.actions import users as acts

storage = database()
tab_accounts, tab_keys, tab_events, tab_team = st.tabs(["Accounts", "API keys", "Event log", "Team progress"])


def run_change(action, *args, success: str) -> None:
    """Apply one account change (an action of core/orchestration/actions/users.py); show one clear
    message either way."""
    try:
        action(storage, user, *args)
        st.success(success)
    except UserError as exc:
        st.error(md_escape(str(exc)))


with tab_accounts:
    rows = acts.accounts_table(storage, user)
    names = [row["name"] for row in rows]
    st.dataframe(spreadsheet_safe(pd.DataFrame(rows)), hide_index=True, width="stretch")

    with st.form("add-user", clear_on_submit=True):
        st.subheader("Add a user")
        c1, c2, c3 = st.columns(3)
        name = c1.text_input("Name")
        role = c2.selectbox("Role", list(acts.ROLES))
        password = c3.text_input("Password (8+ characters)", type="password")
        if st.form_submit_button("Add"):
            try:
                acts.add_user(storage, user, name, password, role)
                st.success(f"Added {md_escape(name)} ({role}).")
                st.rerun()
            except UserError as exc:
                st.error(md_escape(str(exc)))

    st.subheader("Change a user")
    target = st.selectbox("User", names, key="users-target")
    c1, c2, c3 = st.columns(3)
    new_role = c1.selectbox("New role", list(acts.ROLES), key="users-role")
    shown = md_escape(target)  # a user name: markdown in it must not become a link
    if c1.button("Change role", key="users-set-role"):
        run_change(acts.set_role, target, new_role, success=f"{shown} is now {new_role}.")
    if c2.button("Deactivate", key="users-deactivate"):
        run_change(acts.deactivate, target, success=f"{shown} is deactivated.")
    if c2.button("Reactivate", key="users-reactivate"):
        run_change(acts.reactivate, target, success=f"{shown} is active again.")
    new_password = c3.text_input("New password", type="password", key="users-new-password")
    if c3.button("Reset password", key="users-reset"):
        run_change(acts.reset_password, target, new_password, success=f"Password of {shown} reset.")

with tab_keys:
    st.caption("Keys of the serving API (`python -m core serve`). A key is shown once, when it is made.")
    keys = acts.api_keys_table(storage, user)
    st.dataframe(spreadsheet_safe(pd.DataFrame(keys)), hide_index=True, width="stretch")
    with st.form("add-api-key", clear_on_submit=True):
        st.subheader("Create a key")
        c1, c2, c3, c4, c5 = st.columns(5)
        owner = c1.selectbox("For user", names)
        key_name = c2.text_input("Key name")
        capture = c3.selectbox("Capture answers", ["off", "all", "flagged"])
        capture_dataset = c4.text_input("Into dataset")
        capture_threshold = c5.number_input("Flagged at risk", 0.0, 1.0, 0.5, 0.05)
        if st.form_submit_button("Create"):
            try:
                token = acts.create_api_key(
                    storage,
                    user,
                    owner,
                    key_name,
                    capture=capture,
                    capture_dataset=capture_dataset or None,
                    capture_threshold=capture_threshold,
                )
                st.success("Copy the key now: it is not shown again.")
                st.code(token, language=None)
            except UserError as exc:
                st.error(md_escape(str(exc)))
    for key in [k for k in keys if not k["revoked"]]:  # one button per live key
        label = md_escape(f"Revoke {key['user']} / {key['name']} ({key['prefix']}…)")  # labels render markdown
        if st.button(label, key=f"keys-revoke-{key['id']}"):
            run_change(acts.revoke_api_key, key["id"], success="The key is revoked.")

with tab_events:
    people = acts.people(storage)
    datasets = shared.dataset_names(storage)
    c1, c2, c3, c4 = st.columns(4)
    who = c1.selectbox("User", [None, *people], format_func=lambda n: n or "anyone", key="ev-user")
    action = (
        c2.text_input(
            "Action", key="ev-action", help="the start of an action: annotation finds annotation.save, .skip, …"
        )
        or None
    )
    dataset = c3.selectbox("Dataset", [None, *datasets], format_func=lambda d: d or "any", key="ev-dataset")
    since = c4.date_input("Since", value=None, key="ev-since")
    events = acts.event_log(
        storage,
        user,
        user_id=people.get(who) if who else None,
        action=action,
        dataset=dataset,
        since=datetime.combine(since, time.min, tzinfo=UTC) if since else None,
        limit=500,
    )
    table = pd.DataFrame(
        [
            {
                **event,
                "before": readable(event["before"]) if event["before"] is not None else "",
                "after": readable(event["after"]) if event["after"] is not None else "",
            }
            for event in events
        ]
    )
    picked = st.dataframe(
        spreadsheet_safe(table),
        hide_index=True,
        width="stretch",
        height=480,
        on_select="rerun",
        selection_mode="single-row",
        key="ev-table",
        column_config={c: st.column_config.TextColumn(c, width="large") for c in ("what", "before", "after")},
    )
    st.caption("Select a row to read its before and after in full.")
    rows = picked.selection.rows if picked and picked.selection else []
    if rows and rows[0] < len(events):
        chosen = events[rows[0]]
        st.markdown(f"**{md_escape(chosen['action'])}** · {md_escape(chosen['what'])}")
        b1, b2 = st.columns(2)
        b1.caption("before")
        b1.text(readable_lines(chosen["before"]))  # st.text: shown as typed, never as markdown
        b2.caption("after")
        b2.text(readable_lines(chosen["after"]))

with tab_team:
    datasets = shared.dataset_names(storage)
    dataset = st.selectbox(
        "Agreement with gold on dataset", [None, *datasets], format_func=lambda d: d or "—", key="team-dataset"
    )
    st.dataframe(
        spreadsheet_safe(pd.DataFrame(readable_table(acts.team_table(storage, user, dataset), acts.TEAM_COLUMNS, 2))),
        hide_index=True,
        width="stretch",
    )
    st.caption(
        "Median time per item: the median gap between a person's consecutive saves, ignoring pauses "
        "over 30 minutes. κ vs gold: token-level Cohen's kappa against the gold set."
    )
