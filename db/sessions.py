"""Server-side sign-in sessions: the browser keeps a random token, the database its hash.

Every script run resolves the token to the *current* user row (one indexed lookup), so a
role change, a deactivation or a revocation reaches an open browser at its next click.
Functions take a Session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import overload

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.engine import rows_matched
from db.models import User, UserSession, utcnow

TOKEN_BYTES = 64  # split in two halves of 43 characters (core/components/session_cookie.py)
#: last_seen_at is written at most this often, so a page's reruns do not each write a row
TOUCH_EVERY = timedelta(seconds=60)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@overload
def _aware(moment: datetime) -> datetime: ...
@overload
def _aware(moment: None) -> None: ...
def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def create_session(session: Session, user: User) -> str:
    """A new sign-in for `user`; returns the token for the cookie (never stored)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = utcnow()
    session.add(UserSession(id=_digest(token), user_id=user.id, created_at=now, last_seen_at=now))
    session.flush()
    return token


def _lookup(session: Session, token: str | None, idle: timedelta, now: datetime) -> tuple[User | None, str | None]:
    """(the active user behind `token` or None, the write it still needs: "idle", "touch" or None)."""
    if not token or not isinstance(token, str) or len(token) > 200:
        return None, None
    found = session.execute(
        select(UserSession, User).join(User, User.id == UserSession.user_id).where(UserSession.id == _digest(token))
    ).first()
    if found is None:
        return None, None
    row, user = found
    if row.revoked_at is not None or not user.active:
        return None, None
    if now - _aware(row.last_seen_at) > idle:
        return None, "idle"
    return user, ("touch" if now - _aware(row.last_seen_at) > TOUCH_EVERY else None)


def peek(session: Session, token: str | None, idle: timedelta, now: datetime | None = None) -> tuple[User | None, bool]:
    """`resolve` without writing, for a read-only transaction: (the user or None, whether
    `resolve` must still run in a writing one to record an idle end or the last visit)."""
    user, pending = _lookup(session, token, idle, _aware(now) or utcnow())
    return user, pending is not None


def resolve(session: Session, token: str | None, idle: timedelta, now: datetime | None = None) -> User | None:
    """The active user behind `token`, or None: unknown, revoked, idle too long, or deactivated."""
    now = _aware(now) or utcnow()
    user, pending = _lookup(session, token, idle, now)
    if pending is None:
        return user
    # A pending write means `_lookup` found the open session row of this (non-empty) token.
    assert token is not None
    row = session.get(UserSession, _digest(token))
    assert row is not None, "the row _lookup just read is in this session"
    if pending == "idle":
        row.revoked_at, row.revoked_reason = now, "idle"
        session.flush()
        return None
    row.last_seen_at = now
    session.flush()
    return user


def revoke(session: Session, token: str | None, reason: str = "signed out") -> None:
    if not token or not isinstance(token, str):
        return
    row = session.get(UserSession, _digest(token))
    if row is not None and row.revoked_at is None:
        row.revoked_at, row.revoked_reason = utcnow(), reason
        session.flush()


def revoke_all(session: Session, user_id: int, reason: str) -> int:
    """End every open session of one person (sign out everywhere, role change, deactivation)."""
    result = session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason[:100])
    )
    return int(rows_matched(result) or 0)


def open_sessions(session: Session, user_id: int) -> list[UserSession]:
    return list(
        session.scalars(
            select(UserSession)
            .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
            .order_by(UserSession.created_at)
        )
    )
