"""Accounts: argon2 password hashes, roles, a progressive delay after failures, audited changes.

Functions take a Session and never commit: the caller owns the transaction. The one
exception to "an error means roll back" is `authenticate`: a failed login must still be
counted, so use `login(db, ...)`, which commits the bookkeeping even when it raises.
"""

from __future__ import annotations

import time
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.base import settings
from core.base.errors import UserError
from core.text.confusables import skeleton
from db.api_keys import revoke_user_keys
from db.events import log_event
from db.models import ROLES, User, utcnow
from db.sessions import revoke_all

if TYPE_CHECKING:
    from db import Database

MIN_PASSWORD_LENGTH = 8
MAX_NAME_LENGTH = 100
MAX_FAILED_LOGINS = 5  # failures in a row before each further try of that name is slowed down
MAX_DELAY_SECONDS = 10.0  # the slow-down grows 1, 2, 4, 8, 10, 10, ... seconds per try
FORBIDDEN_IN_NAMES = "/\\"
# control, format (zero-width, bidi overrides), surrogate, private, unassigned, line/paragraph separators
FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
ADMIN_ROLE = "admin"
ADMIN_NAME = "admin"
ADMIN_PASSWORD_ENV = "PROBELENS_ADMIN_PASSWORD"
BAD_LOGIN = "wrong user name or password"

# Module-level so tests can swap in cheap parameters; argon2 defaults cost ~0.1 s per hash.
hasher = PasswordHasher()
_dummy_hash: str | None = None
sleep = time.sleep  # tests replace it to observe the delay without waiting
# Failures of names that have no account, so they are slowed down exactly like real ones
# (otherwise the delay would tell which names exist). Bounded; per server process.
_unknown_failures: OrderedDict[str, tuple[int, datetime]] = OrderedDict()
_UNKNOWN_MAX = 10_000


# --- validation ---------------------------------------------------------------------


def name_key(name: str) -> str:
    """What makes two names the same account: NFKC, case-folded, and Cyrillic or Greek
    look-alikes read as Latin ("Ann" = "ann" = "ａｎｎ", "аdm2" with a Cyrillic а = "adm2")."""
    return skeleton(name.strip())[:MAX_NAME_LENGTH]


def _clean_name(name: str) -> str:
    """A new name as typed, refused (one message) if it could be mistaken for another or forge a line."""
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise UserError(f"user name must be 1 to {MAX_NAME_LENGTH} characters")
    if name != name.strip():
        raise UserError("user name must not start or end with a space")
    bad = [c for c in name if c in FORBIDDEN_IN_NAMES or unicodedata.category(c) in FORBIDDEN_CATEGORIES]
    if bad:
        raise UserError(
            "user name must not contain slashes, control, zero-width or text-direction characters "
            f"(found U+{ord(bad[0]):04X})"
        )
    return name


def _check_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise UserError(f"unknown role '{role}' (allowed: {', '.join(ROLES)})")


def _as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _public(user: User) -> dict[str, Any]:
    """What the audit log may see of an account: never the hash."""
    return {"name": user.name, "role": user.role, "active": bool(user.active)}


# --- queries ------------------------------------------------------------------------


def _find(session: Session, name: str) -> User | None:
    if not isinstance(name, str) or not name.strip() or len(name) > 4 * MAX_NAME_LENGTH:
        return None
    return session.scalar(
        select(User)
        .where(
            or_(
                User.name_key == name_key(name),
                User.name == name.strip(),  # rows written without the key, or keyed `<key>#<id>` on a clash
            )
        )
        .order_by(case((User.name == name.strip(), 0), else_=1), User.id)  # the exact name first
        .limit(1)
    )


def get_user(session: Session, name: str) -> User:
    user = _find(session, name)
    if user is None:
        raise UserError(f"unknown user '{name}'")
    return user


def user_by_id(session: Session, user_id: int | None) -> User | None:
    """The account with this id (None for no id or an unknown one): runs and actions carry ids, not rows."""
    return session.get(User, user_id) if user_id else None


def shown_role(user: User) -> str:
    """The role column wherever accounts are listed: a judge's bot account shows as "model"."""
    return "model" if user.bot else user.role


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))


# --- changes ------------------------------------------------------------------------


def _require_admin(actor: User | None) -> None:
    """People act through an admin account that is active *now* (None: the operator's CLI)."""
    if actor is not None and (not actor.active or actor.role != ADMIN_ROLE):
        raise UserError("only an active admin can change accounts")


def add_user(session: Session, name: str, password: str, role: str = "annotator", actor: User | None = None) -> User:
    _require_admin(actor)
    name = _clean_name(name)
    _check_password(password)
    _check_role(role)
    if _find(session, name) is not None:
        raise UserError(f"user '{name}' already exists")
    user = User(
        name=name, name_key=name_key(name), password_hash=hasher.hash(password), role=role, active=True, failed_logins=0
    )
    try:
        # A concurrent add of the same name loses at the unique constraint, not silently.
        with session.begin_nested():
            session.add(user)
    except IntegrityError:
        raise UserError(f"user '{name}' already exists") from None
    log_event(session, user=actor, action="user.add", entity="user", entity_id=user.id, after=_public(user))
    return user


def _ensure_other_admin(session: Session, user: User) -> None:
    """Refuse to leave the system without an active admin.

    Locks every active admin row (FOR UPDATE on PostgreSQL; SQLite writers are already
    serialised), so two admins demoting each other at once cannot both succeed.
    """
    admins = session.scalars(
        select(User.id).where(User.role == ADMIN_ROLE, User.active.is_(True)).order_by(User.id).with_for_update()
    ).all()
    if not [admin_id for admin_id in admins if admin_id != user.id]:
        raise UserError("cannot remove the last admin")


def _is_active_admin(user: User) -> bool:
    return user.role == ADMIN_ROLE and bool(user.active)


def _record(
    session: Session, action: str, user: User, before: dict[str, Any], actor: User | None, detail: str | None = None
) -> None:
    log_event(
        session,
        user=actor,
        action=action,
        entity="user",
        entity_id=user.id,
        before=before,
        after=_public(user),
        detail=detail,
    )


def _not_a_model(user: User, what: str) -> None:
    """A judge's account has no role or password of its own: it is managed through its judge."""
    if user.bot:
        raise UserError(f"'{user.name}' is an LLM judge's account (a model): its {what} cannot be changed")


def set_role(session: Session, name: str, role: str, actor: User | None) -> User:
    _require_admin(actor)
    _check_role(role)
    user = get_user(session, name)
    _not_a_model(user, "role")
    if user.role == role:
        return user
    if _is_active_admin(user):
        _ensure_other_admin(session, user)
    before = _public(user)
    user.role = role
    revoke_all(session, user.id, "role changed")
    revoke_user_keys(session, user.id, "role changed")
    _record(session, "user.set_role", user, before, actor)
    return user


def deactivate(session: Session, name: str, actor: User | None) -> User:
    _require_admin(actor)
    user = get_user(session, name)
    if not user.active:
        return user
    if _is_active_admin(user):
        _ensure_other_admin(session, user)
    before = _public(user)
    user.active = False
    revoke_all(session, user.id, "deactivated")
    revoke_user_keys(session, user.id, "deactivated")
    _record(session, "user.deactivate", user, before, actor)
    return user


def reactivate(session: Session, name: str, actor: User | None) -> User:
    _require_admin(actor)
    user = get_user(session, name)
    if user.active:
        return user
    before = _public(user)
    user.active = True
    user.failed_logins = 0
    user.locked_until = None
    _record(session, "user.reactivate", user, before, actor)
    return user


def reset_password(session: Session, name: str, new_password: str, actor: User | None) -> User:
    """Set a new password, lift any slow-down and end the person's open sessions."""
    _require_admin(actor)
    _check_password(new_password)
    user = get_user(session, name)
    _not_a_model(user, "password")
    before = _public(user)
    user.password_hash = hasher.hash(new_password)
    user.failed_logins = 0
    user.locked_until = None
    revoke_all(session, user.id, "password reset")
    _record(session, "user.reset_password", user, before, actor, detail="password changed")
    return user


# --- logging in ---------------------------------------------------------------------


def _verify(password_hash: str, password: str) -> bool:
    try:
        return hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _burn_time(password: str) -> None:
    """Verify against a throwaway hash so unknown names take as long as wrong passwords."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = hasher.hash("not a real password")
    _verify(_dummy_hash, password)


def delay_after(failures: int) -> float:
    """Seconds the next try of a name waits after `failures` failures in a row."""
    if failures < MAX_FAILED_LOGINS:
        return 0.0
    return min(MAX_DELAY_SECONDS, 2.0 ** (failures - MAX_FAILED_LOGINS))


def _wait_until(moment: datetime | None, now: datetime) -> datetime:
    """Wait out a slow-down (at most MAX_DELAY_SECONDS); returns the time after the wait."""
    if moment is None or now >= _as_utc(moment):
        return now
    seconds = min(MAX_DELAY_SECONDS, (_as_utc(moment) - now).total_seconds())
    sleep(seconds)
    return now + timedelta(seconds=seconds)


@dataclass(frozen=True)
class _Account:
    """What a sign-in check needs of an account, read before any waiting or hashing."""

    id: int
    password_hash: str
    locked_until: datetime | None


def _account(session: Session, name: str) -> _Account | None:
    user = _find(session, name)
    return None if user is None else _Account(user.id, user.password_hash, user.locked_until)


def _wait_and_verify(account: _Account | None, name: str, password: str, now: datetime) -> tuple[bool, datetime]:
    """Wait out the name's slow-down, then check the password: the slow part of a sign-in,
    done with no transaction open so it holds no lock anybody else needs."""
    if account is None:
        key = name_key(name) if isinstance(name, str) else ""
        now = _wait_until(_unknown_failures.get(key, (0, None))[1], now)
        _burn_time(password)
        _unknown_name_failure(name, now)
        return False, now
    now = _wait_until(account.locked_until, now)
    return _verify(account.password_hash, password), now


def _count_failure(session: Session, user_id: int, now: datetime) -> None:
    """One more failure, counted by the database itself (`failed_logins + 1` in one UPDATE), so
    failures that arrive together are each counted; the slow-down follows the new count."""
    failures = session.execute(
        update(User)
        .where(User.id == user_id)
        .values(failed_logins=func.coalesce(User.failed_logins, 0) + 1)
        .returning(User.failed_logins)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    delay = delay_after(failures)
    session.execute(
        update(User)
        .where(User.id == user_id)
        .values(locked_until=now + timedelta(seconds=delay) if delay else None)
        .execution_options(synchronize_session=False)
    )
    session.expire_all()


def _unknown_name_failure(name: str, now: datetime) -> None:
    key = name_key(name) if isinstance(name, str) else ""
    failures = _unknown_failures.pop(key, (0, now))[0] + 1
    _unknown_failures[key] = (failures, now + timedelta(seconds=delay_after(failures)))
    while len(_unknown_failures) > _UNKNOWN_MAX:
        _unknown_failures.popitem(last=False)


def _count_success(user: User, password: str) -> None:
    user.failed_logins = 0
    user.locked_until = None
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)


def _settle(session: Session, account: _Account | None, verified: bool, password: str, now: datetime) -> User:
    """Record the outcome of a check in the caller's (writing) transaction; raises on failure
    after the failure is flushed."""
    if account is None:
        raise UserError(BAD_LOGIN)
    if not verified:
        _count_failure(session, account.id, now)
        raise UserError(BAD_LOGIN)
    user = session.get(User, account.id)
    if user is None:  # removed while the password was being checked
        raise UserError(BAD_LOGIN)
    if user.bot:  # a judge's account: its password is random and it never signs in
        raise UserError(BAD_LOGIN)
    if not user.active:
        raise UserError(f"account '{user.name}' is deactivated; ask an admin")
    _count_success(user, password)
    session.flush()
    return user


def authenticate(session: Session, name: str, password: str, now: datetime | None = None) -> User:
    """Check a login inside the caller's session. After five failures in a row every further
    try of that name waits (1, 2, 4, 8, then 10 s) before the password is checked — and a right
    password still gets in after the wait, so nobody can lock an admin out by guessing wrong on
    purpose.

    Unknown names, wrong passwords and slowed-down names get the same message and the same
    timing (unknown names are slowed down alike). Whether an account is deactivated is only
    revealed to someone who knows its password. Failure bookkeeping is flushed, not
    committed. The server signs people in with `login`, which waits outside any transaction.
    """
    now = _as_utc(now or utcnow())
    password = password if isinstance(password, str) else ""
    account = _account(session, name)
    verified, now = _wait_and_verify(account, name, password, now)
    return _settle(session, account, verified, password, now)


def login(db: Database, name: str, password: str, now: datetime | None = None) -> User:
    """A sign-in as the server does it, in three steps so that no lock is held while it waits:
    read the account (a read-only transaction), wait out the slow-down and hash the password
    (no transaction), then record the outcome (a short writing transaction, committed whether
    or not the sign-in succeeds)."""
    now = _as_utc(now or utcnow())
    password = password if isinstance(password, str) else ""
    with db.reading() as session:
        account = _account(session, name)
    verified, now = _wait_and_verify(account, name, password, now)
    failure: UserError | None = None
    with db.sessions() as session:
        with session.begin():
            try:
                user = _settle(session, account, verified, password, now)
            except UserError as exc:
                failure = exc  # committed all the same: the failure is counted
    if failure is not None:
        raise failure
    return user


# --- first start --------------------------------------------------------------------


def has_active_admin(session: Session) -> bool:
    return bool(session.scalar(select(func.count(User.id)).where(User.role == ADMIN_ROLE, User.active.is_(True))))


def ensure_admin(session: Session, password: str | None = None) -> User | None:
    """Create the first admin so a fresh install can be used at all.

    Returns the new user, or None when nothing was created: an active admin already
    exists, or neither `password` nor PROBELENS_ADMIN_PASSWORD is set.
    """
    if has_active_admin(session):
        return None
    password = password or settings.admin_password()
    if not password:
        return None
    if _find(session, ADMIN_NAME) is not None:
        raise UserError(f"no active admin, and user '{ADMIN_NAME}' exists; promote or reactivate an admin by hand")
    return add_user(session, ADMIN_NAME, password, role=ADMIN_ROLE, actor=None)
