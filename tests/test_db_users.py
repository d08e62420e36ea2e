"""Accounts: validation, lockout, no user enumeration, last-admin protection, audit without hashes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

import db.users as users
from core.base.errors import UserError
from db.engine import transaction
from db.models import Event, User

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _add(db, name="alice", password="correct horse", role="annotator"):
    with transaction(db.sessions) as session:
        return users.add_user(session, name, password, role=role)


def _try_login(db, name, password, now):
    """Returns the user or the error message; bookkeeping is committed either way (like the app)."""
    try:
        return users.login(db, name, password, now=now)
    except UserError as error:
        return str(error)


def _user(db, name) -> User:
    with db.sessions() as session:
        return users.get_user(session, name)


# --- adding and validation ----------------------------------------------------------------


def test_add_get_list(any_db):
    _add(any_db, "bob", role="reviewer")
    _add(any_db, "alice")
    with any_db.sessions() as session:
        assert [u.name for u in users.list_users(session)] == ["alice", "bob"]
        bob = users.get_user(session, "bob")
        assert (bob.role, bob.active, bob.failed_logins) == ("reviewer", True, 0)
        assert bob.password_hash.startswith("$argon2id$")
        with pytest.raises(UserError, match="unknown user 'carol'"):
            users.get_user(session, "carol")


@pytest.mark.parametrize(
    ("name", "password", "role", "message"),
    [
        ("", "long enough", "annotator", "1 to 100 characters"),
        ("   ", "long enough", "annotator", "must not start or end with a space"),
        ("  bob", "long enough", "annotator", "must not start or end with a space"),
        ("a/b", "long enough", "annotator", "must not contain slashes"),
        ("a\\b", "long enough", "annotator", "must not contain slashes"),
        ("tab\there", "long enough", "annotator", "U\\+0009"),
        ("new\nline", "long enough", "annotator", "U\\+000A"),
        ("zero\u200bwidth", "long enough", "annotator", "U\\+200B"),
        ("bidi\u202eevil", "long enough", "annotator", "U\\+202E"),
        ("x" * 101, "long enough", "annotator", "1 to 100 characters"),
        ("dave", "short", "annotator", "at least 8 characters"),
        ("dave", "long enough", "boss", "unknown role 'boss' \\(allowed: annotator, reviewer, admin\\)"),
    ],
)
def test_add_rejects_bad_input(sqlite_db, name, password, role, message):
    with pytest.raises(UserError, match=message):
        _add(sqlite_db, name, password, role)
    with sqlite_db.sessions() as session:
        assert users.list_users(session) == []


def test_duplicate_name_is_refused(any_db):
    _add(any_db, "alice")
    for same in ("alice", "Alice", "ALICE", "\uff41lice"):  # the last one starts with a full-width a
        with pytest.raises(UserError, match="already exists"):
            _add(any_db, same)
    with any_db.sessions() as session:
        assert [u.name for u in users.list_users(session)] == ["alice"]
        assert users.get_user(session, "ALICE").name == "alice"


# --- logging in -----------------------------------------------------------------------------


def test_login_success_and_wrong_password(any_db):
    _add(any_db)
    assert _try_login(any_db, "alice", "correct horse", T0).name == "alice"
    assert _try_login(any_db, "alice", "wrong horse", T0) == "wrong user name or password"
    assert _user(any_db, "alice").failed_logins == 1
    assert _try_login(any_db, "alice", "correct horse", T0).name == "alice"
    assert _user(any_db, "alice").failed_logins == 0, "success resets the counter"


def test_unknown_user_and_wrong_password_look_the_same(sqlite_db):
    _add(sqlite_db)
    unknown = _try_login(sqlite_db, "mallory", "correct horse", T0)
    wrong = _try_login(sqlite_db, "alice", "not it at all", T0)
    assert unknown == wrong == "wrong user name or password"


def test_after_five_failures_each_try_waits_longer_but_the_right_password_gets_in(any_db, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(users, "sleep", waits.append)
    _add(any_db)
    for second in range(5):
        assert _try_login(any_db, "alice", "guess", T0 + timedelta(seconds=second)) == users.BAD_LOGIN
    assert waits == [], "the first five tries are not slowed down"
    for second in range(5, 9):
        assert _try_login(any_db, "alice", "guess", T0 + timedelta(seconds=second)) == users.BAD_LOGIN
    # failure 5 (t=4s) asks for 1 s: the try at t=5 is on time; failure 6 asks for 2 s from t=5,
    # the try at t=6 waits 1 s; failure 7 (at t=7) asks for 4 s, failure 8 for 8 s (capped at 10)
    assert [round(w, 3) for w in waits] == [1.0, 4.0, 10.0], "each try waits out the delay"
    waits.clear()
    # the right password still gets in, after the wait: a stranger cannot lock the account out
    user = _try_login(any_db, "alice", "correct horse", T0 + timedelta(seconds=9))
    assert isinstance(user, User) and waits and waits[0] <= users.MAX_DELAY_SECONDS
    stored = _user(any_db, "alice")
    assert (stored.failed_logins, stored.locked_until) == (0, None)


def test_failures_must_be_consecutive(sqlite_db):
    _add(sqlite_db)
    for _ in range(4):
        _try_login(sqlite_db, "alice", "guess", T0)
    assert isinstance(_try_login(sqlite_db, "alice", "correct horse", T0), User)
    for _ in range(4):
        assert _try_login(sqlite_db, "alice", "guess", T0) == users.BAD_LOGIN
    assert isinstance(_try_login(sqlite_db, "alice", "correct horse", T0), User)


def test_authenticate_in_callers_session_flushes_failures(sqlite_db):
    _add(sqlite_db)
    with sqlite_db.sessions() as session:
        with session.begin():  # writes need an explicit transaction
            with pytest.raises(UserError, match="wrong user name or password"):
                users.authenticate(session, "alice", "guess", now=T0)
    assert _user(sqlite_db, "alice").failed_logins == 1


def test_inactive_user_is_refused_only_with_the_right_password(sqlite_db):
    _add(sqlite_db, "root", role="admin")
    _add(sqlite_db)
    with transaction(sqlite_db.sessions) as session:
        users.deactivate(session, "alice", actor=None)
    assert _try_login(sqlite_db, "alice", "wrong guess", T0) == users.BAD_LOGIN
    assert "deactivated" in _try_login(sqlite_db, "alice", "correct horse", T0)
    with transaction(sqlite_db.sessions) as session:
        users.reactivate(session, "alice", actor=None)
    assert isinstance(_try_login(sqlite_db, "alice", "correct horse", T0), User)


def test_weak_hash_is_upgraded_on_login(sqlite_db, monkeypatch):
    _add(sqlite_db)  # hashed with the cheap parameters
    old_hash = _user(sqlite_db, "alice").password_hash
    monkeypatch.setattr(users, "hasher", PasswordHasher(time_cost=2, memory_cost=16, parallelism=1))
    assert isinstance(_try_login(sqlite_db, "alice", "correct horse", T0), User)
    new_hash = _user(sqlite_db, "alice").password_hash
    assert new_hash != old_hash and "t=2" in new_hash
    assert isinstance(_try_login(sqlite_db, "alice", "correct horse", T0), User)


def test_reset_password_lifts_lockout(sqlite_db):
    _add(sqlite_db)
    for _ in range(5):
        _try_login(sqlite_db, "alice", "guess", T0)
    with transaction(sqlite_db.sessions) as session:
        with pytest.raises(UserError, match="at least 8"):
            users.reset_password(session, "alice", "short", actor=None)
        users.reset_password(session, "alice", "new password!", actor=None)
    assert _try_login(sqlite_db, "alice", "correct horse", T0) == users.BAD_LOGIN
    assert isinstance(_try_login(sqlite_db, "alice", "new password!", T0), User)


# --- roles and the last admin -----------------------------------------------------------


def test_last_admin_cannot_be_demoted_or_deactivated(any_db):
    root = _add(any_db, "root", role="admin")
    with transaction(any_db.sessions) as session:
        with pytest.raises(UserError, match="cannot remove the last admin"):
            users.set_role(session, "root", "annotator", actor=root)
        with pytest.raises(UserError, match="cannot remove the last admin"):
            users.deactivate(session, "root", actor=root)
    _add(any_db, "second", role="admin")
    with transaction(any_db.sessions) as session:
        users.deactivate(session, "second", actor=root)
    with transaction(any_db.sessions) as session:  # an inactive admin does not count
        with pytest.raises(UserError, match="cannot remove the last admin"):
            users.set_role(session, "root", "reviewer", actor=root)
        users.reactivate(session, "second", actor=root)
    with transaction(any_db.sessions) as session:
        assert users.set_role(session, "root", "reviewer", actor=root).role == "reviewer"
        with pytest.raises(UserError, match="unknown role"):
            users.set_role(session, "second", "owner", actor=root)


def test_events_record_changes_without_hashes(any_db):
    root = _add(any_db, "root", role="admin")
    with transaction(any_db.sessions) as session:
        users.add_user(session, "alice", "correct horse", actor=root)
        users.set_role(session, "alice", "reviewer", actor=root)
        users.set_role(session, "alice", "reviewer", actor=root)  # no change, no event
        users.deactivate(session, "alice", actor=root)
        users.reactivate(session, "alice", actor=root)
        users.reset_password(session, "alice", "another password", actor=root)
    with any_db.sessions() as session:
        events = list(session.scalars(select(Event).order_by(Event.id)))
        hashes = {u.password_hash for u in users.list_users(session)}
    assert [e.action for e in events] == [
        "user.add",
        "user.add",
        "user.set_role",
        "user.deactivate",
        "user.reactivate",
        "user.reset_password",
    ]
    assert all(e.entity == "user" for e in events)
    assert events[0].user_id is None and all(e.user_id == root.id for e in events[1:])
    assert events[2].before == {"name": "alice", "role": "annotator", "active": True}
    assert events[2].after == {"name": "alice", "role": "reviewer", "active": True}
    assert events[3].after["active"] is False
    for event in events:
        text = json.dumps([event.before, event.after, event.detail])
        assert "argon2" not in text and "password_hash" not in text
        assert not any(h in text for h in hashes)


# --- first start ----------------------------------------------------------------------------


def test_ensure_admin(sqlite_db, monkeypatch):
    monkeypatch.delenv(users.ADMIN_PASSWORD_ENV, raising=False)
    with transaction(sqlite_db.sessions) as session:
        assert users.ensure_admin(session) is None
        assert users.list_users(session) == []
    monkeypatch.setenv(users.ADMIN_PASSWORD_ENV, "from the environment")
    with transaction(sqlite_db.sessions) as session:
        admin = users.ensure_admin(session)
        assert (admin.name, admin.role) == ("admin", "admin")
    with transaction(sqlite_db.sessions) as session:
        assert users.ensure_admin(session, "another password") is None, "an admin exists already"
    assert isinstance(_try_login(sqlite_db, "admin", "from the environment", T0), User)


def test_ensure_admin_with_explicit_password(sqlite_db, monkeypatch):
    monkeypatch.setenv(users.ADMIN_PASSWORD_ENV, "from the environment")
    with transaction(sqlite_db.sessions) as session:
        users.ensure_admin(session, "explicit password")
    assert isinstance(_try_login(sqlite_db, "admin", "explicit password", T0), User)


def test_ensure_admin_validates_the_password(sqlite_db):
    with transaction(sqlite_db.sessions) as session:
        with pytest.raises(UserError, match="at least 8"):
            users.ensure_admin(session, "short")
