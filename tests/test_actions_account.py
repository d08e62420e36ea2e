"""Sign-in, sign-out, session resolution and the first admin, as actions (no browser)."""

from __future__ import annotations

import pytest

from core.base.errors import UserError
from core.orchestration.actions import account
from core.orchestration.actions.acting import SESSION_ENDED, Actor, acting_user, writing


@pytest.fixture()
def storage(tmp_path, monkeypatch):
    from db import open_database

    monkeypatch.delenv("PROBELENS_ADMIN_PASSWORD", raising=False)
    database = open_database(f"sqlite:///{tmp_path / 'account.db'}")
    yield database
    database.dispose()


def test_the_first_admin_is_created_once_and_signed_in(storage):
    assert account.needs_first_admin(storage)
    with pytest.raises(UserError):
        account.create_first_admin(storage, "short")
    assert account.needs_first_admin(storage), "a refused password creates nothing"
    admin = account.create_first_admin(storage, "a-good-password")
    assert (admin.name, admin.role) == (account.ADMIN_NAME, "admin") and admin.token
    assert not account.needs_first_admin(storage)
    assert account.resolve(storage, admin.token) == admin


def test_the_admin_password_from_the_environment_needs_no_form(storage, monkeypatch):
    monkeypatch.setenv("PROBELENS_ADMIN_PASSWORD", "from-the-environment")
    assert not account.needs_first_admin(storage)
    assert account.sign_in(storage, "admin", "from-the-environment").role == "admin"


def test_sign_in_gives_a_session_that_sign_out_ends(storage):
    account.create_first_admin(storage, "a-good-password")
    with pytest.raises(UserError, match="wrong user name or password"):
        account.sign_in(storage, "admin", "not-the-password")
    first = account.sign_in(storage, "admin", "a-good-password")
    second = account.sign_in(storage, "admin", "a-good-password")
    assert first.token != second.token
    account.sign_out(storage, first.token)
    assert account.resolve(storage, first.token) is None
    assert account.resolve(storage, second.token) == second, "signing out ends only this sign-in"
    third = account.sign_in(storage, "admin", "a-good-password")
    account.sign_out(storage, third.token, third.id, everywhere=True)
    assert account.resolve(storage, second.token) is None and account.resolve(storage, third.token) is None
    assert account.resolve(storage, None) is None and account.resolve(storage, "forged") is None


def test_the_shared_check_refuses_an_ended_session_and_a_role_without_the_page(storage):
    admin = account.create_first_admin(storage, "a-good-password")
    with writing(storage, admin, "users") as (_session, me):
        assert me.name == "admin"
    with storage.sessions() as session:
        with pytest.raises(UserError, match="no longer allows"):
            acting_user(session, Actor(admin.id, admin.name, "admin", admin.token), "nowhere")
        with pytest.raises(UserError, match="session has ended"):
            acting_user(session, Actor(admin.id, admin.name, "admin", "forged-token"), "users")
        with pytest.raises(UserError, match="no longer active"):
            acting_user(session, Actor(admin.id + 99, "ghost", "admin"), "users")
    account.sign_out(storage, admin.token)
    with pytest.raises(UserError) as refused:
        with writing(storage, admin, "users"):
            pass
    assert str(refused.value) == SESSION_ENDED
