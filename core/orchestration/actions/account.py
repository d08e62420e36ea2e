"""Signing in and out, resolving a browser's sign-in, and the first run's admin account.

Thin wrappers over db.users and db.sessions: the page keeps the token in the browser session
and the cookie; these functions own the transactions.
"""

from __future__ import annotations

from core.orchestration.actions.acting import Actor, idle_limit
from db import Database
from db.sessions import create_session, revoke, revoke_all
from db.sessions import peek as peek_session
from db.sessions import resolve as resolve_session
from db.users import ADMIN_NAME as ADMIN_NAME
from db.users import MIN_PASSWORD_LENGTH as MIN_PASSWORD_LENGTH
from db.users import ensure_admin, has_active_admin, login, user_by_id


def resolve(storage: Database, token: str | None) -> Actor | None:
    """The person behind a sign-in token as the database says *now* (None: ended, unknown, idle)."""
    if not token:
        return None
    with storage.reading() as session:  # most runs only read: no write lock
        user, must_write = peek_session(session, token, idle_limit())
        actor = Actor(user.id, user.name, user.role, token) if user is not None else None
    if not must_write:
        return actor
    with storage.sessions() as session, session.begin():  # the visit (at most once a minute) or an idle end
        user = resolve_session(session, token, idle_limit())
        return Actor(user.id, user.name, user.role, token) if user is not None else None


def sign_in(storage: Database, name: str, password: str) -> Actor:
    """Check the password (db.users.login) and open a new sign-in; refuses with one UserError."""
    user = login(storage, name, password)
    with storage.sessions() as session, session.begin():
        row = user_by_id(session, user.id)
        assert row is not None, "login just found this account, and accounts are never deleted"
        token = create_session(session, row)
    return Actor(user.id, user.name, user.role, token)


def sign_out(storage: Database, token: str | None, user_id: int | None = None, everywhere: bool = False) -> None:
    """End this sign-in, or (everywhere) every sign-in of `user_id`."""
    with storage.sessions() as session, session.begin():
        if everywhere and user_id is not None:
            revoke_all(session, user_id, "signed out everywhere")
        else:
            revoke(session, token)


def needs_first_admin(storage: Database) -> bool:
    """No active admin yet and none to create from PROBELENS_ADMIN_PASSWORD."""
    with storage.reading() as session:  # every run asks: without the write lock
        if has_active_admin(session):
            return False
    with storage.sessions() as session, session.begin():
        return ensure_admin(session) is None  # created from the environment variable, if set


def create_first_admin(storage: Database, password: str) -> Actor:
    """The first run's admin account with the chosen password, signed in at once."""
    with storage.sessions() as session, session.begin():
        ensure_admin(session, password)
    return sign_in(storage, ADMIN_NAME, password)
