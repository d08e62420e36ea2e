"""Users (admin): the team's accounts."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.errors import UserError
from pages.common import database, db_user, require_page

user = require_page("users")
st.title("Users")

from db import users as accounts  # noqa: E402

with database().sessions() as session:
    rows = [{"name": u.name, "role": u.role, "active": u.active, "created": u.created_at}
            for u in accounts.list_users(session)]
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

with st.form("add-user", clear_on_submit=True):
    st.subheader("Add a user")
    c1, c2, c3 = st.columns(3)
    name = c1.text_input("Name")
    role = c2.selectbox("Role", ["annotator", "reviewer", "admin"])
    password = c3.text_input("Password (8+ characters)", type="password")
    if st.form_submit_button("Add"):
        try:
            with database().sessions() as session, session.begin():
                accounts.add_user(session, name, password, role=role, actor=db_user(session, user))
            st.success(f"Added {name} ({role}).")
            st.rerun()
        except UserError as exc:
            st.error(str(exc))
