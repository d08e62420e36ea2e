"""Page logic with Streamlit's AppTest: first run, login, lockout, role-based refusal."""

from __future__ import annotations

import pytest

from tests.support.apptest import add_users, new_app, sign_in


def make_users(database) -> None:
    add_users(
        database,
        ("boss", "boss-password", "admin"),
        ("ann", "ann-password", "annotator"),
        ("rev", "rev-password", "reviewer"),
    )


def test_first_run_asks_for_the_admin_password(app_database):
    at = new_app(timeout=60)
    at.run()
    assert at.title[0].value == "Welcome to ProbeLens"
    fields = {t.label: t for t in at.text_input}
    assert "Admin password (at least 8 characters)" in fields  # the rule is stated before a refusal
    fields["Admin password (at least 8 characters)"].input("first-admin-pw")
    fields["Repeat it"].input("different-pw")
    at.button[0].click()
    at.run()
    assert any("differ" in e.value for e in at.error)
    fields = {t.label: t for t in at.text_input}
    fields["Admin password (at least 8 characters)"].input("first-admin-pw")
    fields["Repeat it"].input("first-admin-pw")
    at.button[0].click()
    at.run()
    from db.users import authenticate

    with app_database.sessions() as session, session.begin():
        assert authenticate(session, "admin", "first-admin-pw").role == "admin"
    # and the admin is signed in at once: no sign-in form, the sidebar names them
    assert "User name" not in [t.label for t in at.text_input]
    assert any("admin" in m.value for m in at.sidebar.markdown)


def test_admin_from_environment(app_database, monkeypatch):
    monkeypatch.setenv("PROBELENS_ADMIN_PASSWORD", "from-env-pw")
    at = new_app(timeout=60)
    at.run()
    assert [t.label for t in at.text_input] == ["User name", "Password"]


def test_wrong_passwords_slow_the_name_down_but_never_lock_the_owner_out(app_database, monkeypatch):
    import db.users as users

    waits: list[float] = []
    monkeypatch.setattr(users, "sleep", waits.append)
    frozen = users.utcnow()  # every try at the same instant: a slow machine cannot outwait the delay
    monkeypatch.setattr(users, "utcnow", lambda: frozen)
    make_users(app_database)
    for _ in range(6):
        at = sign_in("ann", "nope-nope")
        assert [e.value for e in at.error] == ["wrong user name or password"]
        assert "user" not in at.session_state
    assert waits, "after five failures each try of the name waits"
    at = sign_in("ann", "ann-password")
    assert at.session_state["user"].name == "ann", "the right password still gets in after the wait"


@pytest.mark.parametrize(
    ("name", "password", "page", "allowed"),
    [
        ("ann", "ann-password", "pages/users.py", False),
        ("ann", "ann-password", "pages/inspect.py", False),
        ("rev", "rev-password", "pages/inspect.py", True),
        ("rev", "rev-password", "pages/data.py", False),
        ("boss", "boss-password", "pages/users.py", True),
    ],
)
def test_pages_follow_roles(app_database, name, password, page, allowed):
    make_users(app_database)
    at = sign_in(name, password)
    assert at.session_state["user"].name == name
    at.switch_page(page)
    at.run()
    refused = any("does not have access" in e.value or "do not have access" in e.value for e in at.error)
    assert refused is not allowed
    if not allowed:
        # Nothing of the page: no title, no table, no form.
        assert len(at.title) == 0 and len(at.dataframe) == 0


def test_sidebar_lists_only_allowed_pages(app_database):
    make_users(app_database)
    at = sign_in("ann", "ann-password")
    labels = [link.label for link in at.sidebar.get("page_link")]
    assert labels == ["Generate", "Annotate"]


def test_admin_adds_a_user_on_the_users_page(app_database):
    make_users(app_database)
    at = sign_in("boss", "boss-password")
    at.switch_page("pages/users.py")
    at.run()
    fields = {t.label: t for t in at.text_input}
    fields["Name"].input("newbie")
    fields["Password (8+ characters)"].input("newbie-password")
    next(b for b in at.button if b.label == "Add").click()
    at.run()
    from db.users import authenticate

    with app_database.sessions() as session, session.begin():
        assert authenticate(session, "newbie", "newbie-password").role == "annotator"


def test_users_page_roles_last_admin_events_and_team(app_database):
    make_users(app_database)
    at = sign_in("boss", "boss-password")
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

    with app_database.sessions() as session:
        assert get_user(session, "ann").role == "reviewer"
        assert get_user(session, "boss").active
    log = next(df.value for df in at.dataframe if "action" in df.value.columns)
    assert "user.set_role" in set(log["action"])
    team = next(df.value for df in at.dataframe if "answers labelled" in df.value.columns)
    assert set(team["name"]) == {"ann", "boss", "rev"}


def test_the_event_log_reads_as_text_not_python(app_database):
    from db.users import get_user, set_role

    make_users(app_database)
    with app_database.sessions() as session, session.begin():
        set_role(session, "ann", "reviewer", actor=get_user(session, "boss"))
    at = sign_in("boss", "boss-password", "pages/users.py")
    assert not at.exception, at.exception
    events = next(d.value for d in at.dataframe if "before" in d.value.columns)
    shown = " ".join(str(v) for v in list(events["before"]) + list(events["after"]))
    assert "role: annotator" in shown and "role: reviewer" in shown
    assert "{" not in shown and "None" not in shown and "'" not in shown


def test_team_progress_has_human_headings_and_rounded_numbers(app_database):
    make_users(app_database)
    at = sign_in("boss", "boss-password", "pages/users.py")
    assert not at.exception, at.exception
    team = next(d.value for d in at.dataframe if "answers labelled" in d.value.columns)
    assert "median seconds per answer" in team.columns and "κ against gold" in team.columns
    assert not any("_" in str(column) for column in team.columns)
