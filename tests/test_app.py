"""Page logic with Streamlit's AppTest: first run, login, lockout, role-based refusal."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def app_env(tmp_path, monkeypatch):
    import streamlit as st

    from db import open_database

    url = f"sqlite:///{tmp_path / 'app.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("PROBELENS_SEED_DEMO", "0")
    monkeypatch.delenv("PROBELENS_ADMIN_PASSWORD", raising=False)
    monkeypatch.chdir(REPO)
    st.cache_resource.clear()
    database = open_database(url)
    yield database
    database.dispose()
    st.cache_resource.clear()


def make_users(database) -> None:
    from db.users import add_user

    with database.sessions() as session, session.begin():
        add_user(session, "boss", "boss-password", role="admin")
        add_user(session, "ann", "ann-password", role="annotator")
        add_user(session, "rev", "rev-password", role="reviewer")


def login(name: str, password: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    inputs = {t.label: t for t in at.text_input}
    inputs["User name"].input(name)
    inputs["Password"].input(password)
    at.button[0].click()
    at.run()
    return at


def test_first_run_asks_for_the_admin_password(app_env):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.run()
    assert at.title[0].value == "Welcome to ProbeLens"
    fields = {t.label: t for t in at.text_input}
    fields["Admin password"].input("first-admin-pw")
    fields["Repeat it"].input("different-pw")
    at.button[0].click()
    at.run()
    assert any("differ" in e.value for e in at.error)
    fields = {t.label: t for t in at.text_input}
    fields["Admin password"].input("first-admin-pw")
    fields["Repeat it"].input("first-admin-pw")
    at.button[0].click()
    at.run()
    from db.users import authenticate

    with app_env.sessions() as session:
        assert authenticate(session, "admin", "first-admin-pw").role == "admin"


def test_admin_from_environment(app_env, monkeypatch):
    monkeypatch.setenv("PROBELENS_ADMIN_PASSWORD", "from-env-pw")
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.run()
    assert [t.label for t in at.text_input] == ["User name", "Password"]


def test_wrong_password_and_lockout(app_env):
    make_users(app_env)
    for _ in range(5):
        at = login("ann", "nope-nope")
        assert any("wrong user name or password" in e.value for e in at.error)
    at = login("ann", "ann-password")
    assert any("locked" in e.value for e in at.error)
    assert "user" not in at.session_state


@pytest.mark.parametrize(
    ("name", "password", "page", "allowed"),
    [
        ("ann", "ann-password", "pages/users.py", False),
        ("ann", "ann-password", "pages/inspect_probe.py", False),
        ("rev", "rev-password", "pages/inspect_probe.py", True),
        ("rev", "rev-password", "pages/data.py", False),
        ("boss", "boss-password", "pages/users.py", True),
    ],
)
def test_pages_follow_roles(app_env, name, password, page, allowed):
    make_users(app_env)
    at = login(name, password)
    assert at.session_state["user"].name == name
    at.switch_page(page)
    at.run()
    refused = any("does not have access" in e.value or "do not have access" in e.value for e in at.error)
    assert refused is not allowed
    if not allowed:
        # Nothing of the page: no title, no table, no form.
        assert len(at.title) == 0 and len(at.dataframe) == 0


def test_sidebar_lists_only_allowed_pages(app_env):
    make_users(app_env)
    at = login("ann", "ann-password")
    labels = [link.label for link in at.sidebar.get("page_link")]
    assert labels == ["Generate", "Annotate"]


def test_admin_adds_a_user_on_the_users_page(app_env):
    make_users(app_env)
    at = login("boss", "boss-password")
    at.switch_page("pages/users.py")
    at.run()
    fields = {t.label: t for t in at.text_input}
    fields["Name"].input("newbie")
    fields["Password (8+ characters)"].input("newbie-password")
    next(b for b in at.button if b.label == "Add").click()
    at.run()
    from db.users import authenticate

    with app_env.sessions() as session:
        assert authenticate(session, "newbie", "newbie-password").role == "annotator"


def test_users_page_roles_last_admin_events_and_team(app_env):
    make_users(app_env)
    at = login("boss", "boss-password")
    at.switch_page("pages/users.py")
    at.run()
    at.selectbox(key="users-target").set_value("ann")
    at.selectbox(key="users-role").set_value("reviewer")
    at.button(key="users-set-role").click()
    at.run()
    assert any("ann is now reviewer" in s.value for s in at.success)
    at.selectbox(key="users-target").set_value("boss")
    at.button(key="users-deactivate").click()
    at.run()
    assert any("last admin" in e.value for e in at.error)
    from db.users import get_user

    with app_env.sessions() as session:
        assert get_user(session, "ann").role == "reviewer"
        assert get_user(session, "boss").active
    log = next(df.value for df in at.dataframe if "action" in df.value.columns)
    assert "user.set_role" in set(log["action"])
    team = next(df.value for df in at.dataframe if "items_done" in df.value.columns)
    assert set(team["name"]) == {"ann", "boss", "rev"}
