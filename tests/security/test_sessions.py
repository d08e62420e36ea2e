"""Finding 1: a role or account change reaches open sessions at once (AppTest against the real app
and a real SQLite file; the cookie, reloads, new tabs and "sign out everywhere" are driven in
Chromium in test_sessions_browser.py: AppTest runs a page's own script, not the sidebar)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from core.base.errors import UserError
from core.orchestration.cli import main
from db.models import User, UserSession, utcnow
from db.sessions import create_session, resolve
from tests.support.apptest import add_users, sign_in


@pytest.fixture()
def team(app_database):
    add_users(
        app_database,
        ("boss", "boss-password", "admin"),
        ("root", "root-password", "admin"),
        ("ann", "ann-password", "annotator"),
    )
    return app_database


def _login(name: str, password: str) -> AppTest:
    at = sign_in(name, password)
    assert at.session_state["user"].name == name
    return at


def _signed_out(at: AppTest) -> bool:
    return "user" not in at.session_state and [t.label for t in at.text_input] == ["User name", "Password"]


def test_a_demoted_admin_cannot_add_users_or_change_roles_at_the_next_click(team):
    at = _login("boss", "boss-password")
    at.switch_page("pages/users.py")
    at.run()
    assert any(f.label == "Role" for f in at.selectbox) or at.text_input, "the admin sees the Users page"
    # demoted from the CLI while the browser session is open
    assert main(["users", "set-role", "boss", "annotator"]) == 0
    at.run()  # the next interaction
    assert _signed_out(at), "the session ended with the role change"
    assert any("session has ended" in i.value for i in at.info)
    with team.sessions() as session:
        boss = session.scalar(select(User).where(User.name == "boss"))
        assert boss.role == "annotator"
        # and the account itself can no longer act as an admin, whatever a page would try
        from db.users import add_user, set_role

        with pytest.raises(UserError, match="only an active admin"):
            add_user(session, "mallory", "mallory-password", role="admin", actor=boss)
        with pytest.raises(UserError, match="only an active admin"):
            set_role(session, "boss", "admin", actor=boss)
    # signing in again gives the annotator's pages only
    again = _login("boss", "boss-password")
    again.switch_page("pages/users.py")
    again.run()
    assert any("do not have access" in e.value or "does not have access" in e.value for e in again.error)


def test_a_deactivated_users_open_session_ends(team):
    at = _login("ann", "ann-password")
    assert main(["users", "deactivate", "ann"]) == 0
    at.run()
    assert _signed_out(at)


def test_a_password_reset_ends_the_persons_sessions(team, monkeypatch):
    at = _login("ann", "ann-password")
    monkeypatch.setenv("PROBELENS_NEW_PASSWORD", "a-new-password")
    assert main(["users", "reset-password", "ann"]) == 0
    at.run()
    assert _signed_out(at)


def test_session_rows_hold_only_a_hash_and_expire_when_idle(team):
    with team.sessions() as session, session.begin():
        ann = session.scalar(select(User).where(User.name == "ann"))
        token = create_session(session, ann)
        row = session.scalar(select(UserSession).where(UserSession.user_id == ann.id))
        assert token not in row.id and len(token) >= 40
        assert resolve(session, token, timedelta(hours=12)).name == "ann"
        later = utcnow() + timedelta(hours=13)
        assert resolve(session, token, timedelta(hours=12), now=later) is None
        assert resolve(session, token, timedelta(hours=12)) is None, "an expired session stays ended"
        assert resolve(session, "forged-token", timedelta(hours=12)) is None
