"""The one check every action makes: who is acting, and may they still do this?

A page's `Actor` is what its browser session believed at the last run; callbacks and fragments
can fire after the account changed. So each action re-reads the session row and the account
inside its own transaction: the sign-in must still be open, the account active, and its role
must still allow the page the action belongs to. Anything else is one `UserError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from core.base import settings
from core.base.errors import UserError
from core.orchestration.acting_as import ActingAs
from db import Database
from db.models import User
from db.sessions import peek, resolve
from db.users import user_by_id

# Which pages each role may open (the navigation shows only these); an action names its page.
ROLE_PAGES: dict[str, tuple[str, ...]] = {
    "annotator": ("generate", "annotate"),
    "reviewer": ("generate", "annotate", "review", "inspect"),
    "admin": ("generate", "annotate", "review", "inspect", "probes", "data", "users"),
}

SESSION_ENDED = "your session has ended (signed out, expired, or your account was changed); sign in again"


@dataclass(frozen=True)
class Actor:
    """The signed-in person as a page last saw them, with the sign-in's token (None outside a
    browser session, e.g. a script acting for a known account)."""

    id: int
    name: str
    role: str
    token: str | None = None


def idle_limit() -> timedelta:
    """How long a sign-in may sit unused before it ends."""
    return timedelta(hours=settings.session_idle_hours())


def may_open(role: str, page: str) -> bool:
    return page in ROLE_PAGES.get(role, ())


def acting_user(session: Session, actor: Actor, page: str, *, writes: bool = True) -> User:
    """The acting account, re-read in the caller's transaction; refuses (one UserError) when the
    sign-in was revoked or expired, the account is inactive, or its role no longer allows `page`.
    In a reading transaction (`writes=False`) the sign-in is checked without recording the visit."""
    if actor.token is not None:
        signed = resolve(session, actor.token, idle_limit()) if writes else peek(session, actor.token, idle_limit())[0]
        if signed is None or signed.id != actor.id:
            raise UserError(SESSION_ENDED)
    user = user_by_id(session, actor.id)
    if user is None or not user.active:
        raise UserError("your account is no longer active")
    if not may_open(user.role, page):
        raise UserError(f"your role ({user.role}) no longer allows this")
    return user


@contextmanager
def writing(storage: Database, actor: Actor, page: str) -> Iterator[tuple[Session, User]]:
    """One write transaction with the acting account checked inside it (commit on success)."""
    with storage.sessions() as session, session.begin():
        yield session, acting_user(session, actor, page)


@contextmanager
def reading(storage: Database, actor: Actor, page: str) -> Iterator[tuple[Session, User]]:
    """A read-only session with the acting account checked (nothing is committed)."""
    with storage.reading() as session:
        yield session, acting_user(session, actor, page, writes=False)


def checker(actor: Actor, page: str) -> ActingAs:
    """The check, for orchestration steps that open their own transaction (creating a run row,
    registering or promoting a probe): they call it inside that transaction, so a sign-in revoked
    or a role lost a moment before still writes nothing, and the event names the account."""

    def check(session: Session) -> User:
        return acting_user(session, actor, page)

    return check
