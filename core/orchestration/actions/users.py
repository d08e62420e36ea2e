"""The Users page's actions (admins): accounts, the event log, team progress."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.orchestration.actions.acting import Actor, reading, writing
from core.orchestration.team import TEAM_COLUMNS as TEAM_COLUMNS
from core.orchestration.team import team_progress
from db import Database, api_keys
from db import users as accounts
from db.events import list_events

PAGE = "users"
ROLES = ("annotator", "reviewer", "admin")


def accounts_table(storage: Database, actor: Actor) -> list[dict[str, Any]]:
    """Every account: name, role, active, created."""
    with reading(storage, actor, PAGE) as (session, _me):
        return [
            {"name": u.name, "role": accounts.shown_role(u), "active": u.active, "created": u.created_at}
            for u in accounts.list_users(session)
        ]


def people(storage: Database) -> dict[str, int]:
    """Every account's name and id, in the order the accounts are listed."""
    with storage.sessions() as session:
        return {u.name: u.id for u in accounts.list_users(session)}


def add_user(storage: Database, actor: Actor, name: str, password: str, role: str) -> None:
    with writing(storage, actor, PAGE) as (session, me):
        accounts.add_user(session, name, password, role=role, actor=me)


def set_role(storage: Database, actor: Actor, name: str, role: str) -> None:
    """A role change also ends the person's open sign-ins (db.users)."""
    with writing(storage, actor, PAGE) as (session, me):
        accounts.set_role(session, name, role, actor=me)


def deactivate(storage: Database, actor: Actor, name: str) -> None:
    with writing(storage, actor, PAGE) as (session, me):
        accounts.deactivate(session, name, actor=me)


def reactivate(storage: Database, actor: Actor, name: str) -> None:
    with writing(storage, actor, PAGE) as (session, me):
        accounts.reactivate(session, name, actor=me)


def reset_password(storage: Database, actor: Actor, name: str, new_password: str) -> None:
    with writing(storage, actor, PAGE) as (session, me):
        accounts.reset_password(session, name, new_password, actor=me)


def api_keys_table(storage: Database, actor: Actor) -> list[dict[str, Any]]:
    """Every API key of the serving API (never the key itself): owner, name, last use, capture."""
    with reading(storage, actor, PAGE) as (session, _me):
        return api_keys.list_keys(session)


def create_api_key(
    storage: Database,
    actor: Actor,
    name: str,
    key_name: str,
    *,
    capture: str = "off",
    capture_dataset: str | None = None,
    capture_threshold: float | None = None,
) -> str:
    """A new API key for user `name`; returns the key, which is shown once and never stored."""
    with writing(storage, actor, PAGE) as (session, me):
        _row, token = api_keys.create_key(
            session,
            accounts.get_user(session, name),
            key_name,
            actor=me,
            capture=capture,
            capture_dataset=capture_dataset,
            capture_threshold=capture_threshold,
        )
        return token


def revoke_api_key(storage: Database, actor: Actor, key_id: int) -> None:
    with writing(storage, actor, PAGE) as (session, me):
        api_keys.revoke_key(session, key_id, actor=me)


def event_log(
    storage: Database,
    actor: Actor,
    *,
    user_id: int | None = None,
    action: str | None = None,
    dataset: str | None = None,
    since: datetime | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """The newest events matching the filters, each naming its user ("system" when none)."""
    with reading(storage, actor, PAGE) as (session, _me):
        names: dict[int | None, str] = {u.id: u.name for u in accounts.list_users(session)}
        events = list_events(session, user_id=user_id, action=action, dataset=dataset, since=since, limit=limit)
        return [
            {
                "when": e.at,
                "user": names.get(e.user_id, "system"),
                "action": e.action,
                "entity": e.entity,
                "id": e.entity_id,
                "dataset": e.dataset,
                "detail": e.detail,
                "before": e.before,
                "after": e.after,
            }
            for e in events
        ]


def team_table(storage: Database, actor: Actor, dataset: str | None) -> list[dict[str, Any]]:
    """Per person: answers and spans labelled, pace, and agreement with gold on `dataset`."""
    with reading(storage, actor, PAGE) as (session, _me):
        return team_progress(session, dataset)
