"""API keys of the serving API: a random secret for the client, only its sha256 here.

Like sign-in sessions (`db.sessions`), every request resolves its key to the *current* user
row, so a revocation, a deactivation or a role change reaches a running service at the next
request. Functions take a Session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.base.errors import UserError
from db.engine import rows_matched
from db.events import log_event
from db.generations import clean_dataset_name
from db.models import ApiKey, CaptureMode, Role, User, utcnow

KEY_PREFIX = "pl-"
#: last_used_at is written at most this often, so a busy key does not write a row per request
TOUCH_EVERY = timedelta(seconds=30)
MAX_KEY_LENGTH = 200


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class KeyOwner:
    """What the service needs of a valid key, read in one transaction (no live ORM rows leave it)."""

    key_id: int
    key_name: str
    user_id: int
    user_name: str
    capture: str
    capture_dataset: str | None
    capture_threshold: float | None


def _require_admin(actor: User | None) -> None:
    if actor is not None and (not actor.active or actor.role != Role.ADMIN.value):
        raise UserError("only an active admin can manage API keys")


def _check_capture(capture: str, dataset: str | None, threshold: float | None) -> None:
    if capture not in {m.value for m in CaptureMode}:
        raise UserError("capture must be off, all or flagged")
    if capture != CaptureMode.OFF.value:
        if not (dataset or "").strip():
            raise UserError("capturing answers needs a dataset name")
        clean_dataset_name(dataset)  # refused now, not at the first captured answer
    if capture == CaptureMode.FLAGGED.value and (threshold is None or not 0.0 <= threshold <= 1.0):
        raise UserError("capturing flagged answers needs a threshold between 0 and 1")


def create_key(
    session: Session,
    user: User,
    name: str,
    *,
    actor: User | None,
    capture: str = CaptureMode.OFF.value,
    capture_dataset: str | None = None,
    capture_threshold: float | None = None,
) -> tuple[ApiKey, str]:
    """A new key for `user`; returns the row and the key itself (shown once, never stored)."""
    _require_admin(actor)
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise UserError("a key needs a name of 1 to 100 characters")
    if not user.active:
        raise UserError(f"{user.name} is deactivated: reactivate the account before giving it a key")
    _check_capture(capture, capture_dataset, capture_threshold)
    token = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        key_hash=_digest(token),
        prefix=token[:10],
        name=name,
        user_id=user.id,
        created_at=utcnow(),
        capture=capture,
        capture_dataset=(capture_dataset or "").strip() or None,
        capture_threshold=capture_threshold,
    )
    session.add(row)
    session.flush()
    log_event(
        session,
        user=actor,
        action="api_key.create",
        entity="api_key",
        entity_id=row.id,
        after=public(row, user.name),
    )
    return row, token


def public(row: ApiKey, owner: str) -> dict[str, Any]:
    """What a listing (and the audit log) may see of a key: never the hash."""
    return {
        "id": row.id,
        "name": row.name,
        "user": owner,
        "prefix": row.prefix,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
        "revoked": row.revoked_at is not None,
        "capture": row.capture,
        "capture_dataset": row.capture_dataset,
        "capture_threshold": row.capture_threshold,
    }


def list_keys(session: Session, user: User | None = None) -> list[dict[str, Any]]:
    """Every key (of one person, or of everyone), newest first, as `public` dicts."""
    query = select(ApiKey, User.name).join(User, User.id == ApiKey.user_id).order_by(ApiKey.id.desc())
    if user is not None:
        query = query.where(ApiKey.user_id == user.id)
    return [public(row, owner) for row, owner in session.execute(query).all()]


def revoke_key(session: Session, key_id: int, *, actor: User | None) -> None:
    """End one key now (idempotent for a key already revoked)."""
    _require_admin(actor)
    row = session.get(ApiKey, key_id)
    if row is None:
        raise UserError(f"no API key with id {key_id}")
    if row.revoked_at is not None:
        return
    row.revoked_at = utcnow()
    row.revoked_reason = "revoked"
    log_event(session, user=actor, action="api_key.revoke", entity="api_key", entity_id=row.id)


def revoke_user_keys(session: Session, user_id: int, reason: str) -> int:
    """End every key of one person (role change, deactivation); returns how many."""
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason[:100])
    )
    return int(rows_matched(result) or 0)


def resolve_key(session: Session, token: str | None, now: datetime | None = None) -> KeyOwner | None:
    """The valid key behind `token` with its active owner, or None (unknown, revoked, deactivated).

    Records the key's last use (at most every TOUCH_EVERY): call it in a writing transaction."""
    if not token or not isinstance(token, str) or len(token) > MAX_KEY_LENGTH:
        return None
    found = session.execute(
        select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.key_hash == _digest(token))
    ).first()
    if found is None:
        return None
    row, user = found
    if row.revoked_at is not None or not user.active:
        return None
    now = now or utcnow()
    if row.last_used_at is None or now - _aware(row.last_used_at) > TOUCH_EVERY:
        row.last_used_at = now
    return KeyOwner(row.id, row.name, user.id, user.name, row.capture, row.capture_dataset, row.capture_threshold)
