"""Finding 1 in a real Chromium: sign-in survives a reload and a new tab through the session cookie,
and a role change, deactivation or "sign out everywhere" ends open sessions at the next click."""

from __future__ import annotations

import pytest

from core.orchestration.cli import main
from tests.support.apptest import add_users
from tests.support.browser import served_app, sign_in, submit_add_user, wait_for_session_cookie

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

LOGIN = "User name"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Two admins and two annotators, served; yields (app, database, url) for the CLI."""

    def prepare(database) -> None:
        add_users(
            database,
            ("boss", "boss-password", "admin"),
            ("root", "root-password", "admin"),
            ("ann", "ann-password", "annotator"),
            ("bea", "bea-password", "annotator"),
        )

    with served_app(tmp_path_factory.mktemp("served"), prepare) as served_parts:
        yield served_parts


def _cli(url: str, monkeypatch, *args: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(list(args)) == 0


def _shows_login(page, timeout: float = 30_000) -> None:
    page.get_by_label(LOGIN).wait_for(timeout=timeout)


def test_a_sign_in_survives_a_reload_and_a_new_tab_and_the_cookie_holds_only_a_token(page, served, chromium):
    app, _database, _url = served
    sign_in(page, app, "bea", "bea-password")
    cookie = wait_for_session_cookie(page)
    assert cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert len(cookie["value"]) >= 40 and "bea" not in cookie["value"] and "annotator" not in cookie["value"]
    page.reload()
    page.get_by_text("bea ·").wait_for(timeout=60_000)
    assert page.get_by_label(LOGIN).count() == 0
    tab = page.context.new_page()
    tab.goto(app.url())
    tab.get_by_text("bea ·").wait_for(timeout=60_000)
    stranger = chromium.new_context()  # another browser: no cookie, no sign-in
    try:
        other = stranger.new_page()
        other.goto(app.url())
        _shows_login(other)
    finally:
        stranger.close()


def test_a_demoted_admin_cannot_add_a_user_at_the_next_click(page, served, monkeypatch):
    from db.users import get_user

    app, database, url = served
    sign_in(page, app, "boss", "boss-password")
    page.get_by_role("link", name="Users").click()
    page.get_by_text("Add a user").wait_for(timeout=30_000)
    page.wait_for_timeout(1_000)
    _cli(url, monkeypatch, "users", "set-role", "boss", "annotator")  # by another admin, from the CLI
    submit_add_user(page, "mallory", "mallory-password")
    _shows_login(page)
    assert page.get_by_text("Event log").count() == 0, "no admin data after the demotion"
    with database.sessions() as session:
        assert get_user(session, "boss").role == "annotator"
        with pytest.raises(Exception, match="unknown user"):
            get_user(session, "mallory")
    page.reload()  # the old cookie is revoked too
    _shows_login(page)


def test_a_deactivated_users_open_session_ends(page, served, monkeypatch):
    app, _database, url = served
    sign_in(page, app, "ann", "ann-password")
    _cli(url, monkeypatch, "users", "deactivate", "ann")
    page.get_by_role("link", name="Annotate").click()
    _shows_login(page)
    assert page.get_by_text("session has ended").count() == 1


def test_sign_out_everywhere_ends_the_other_browsers_session(page, served, chromium, monkeypatch):
    app, _database, url = served
    _cli(url, monkeypatch, "users", "reactivate", "ann")
    sign_in(page, app, "ann", "ann-password")
    elsewhere = chromium.new_context()
    try:
        second = elsewhere.new_page()
        sign_in(second, app, "ann", "ann-password")
        page.get_by_role("button", name="Sign out everywhere").click()
        _shows_login(page)
        second.get_by_role("link", name="Annotate").click()
        _shows_login(second)
    finally:
        elsewhere.close()
