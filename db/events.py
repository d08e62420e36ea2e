"""The append-only event log: every change says who, when, what, and the before/after."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Event, User


def log_event(
    session: Session,
    *,
    user: User | None,
    action: str,
    entity: str,
    entity_id: int | None = None,
    generation_id: int | None = None,
    dataset: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    detail: str | None = None,
) -> Event:
    event = Event(
        user_id=user.id if user is not None else None,
        action=action,
        entity=entity,
        entity_id=entity_id,
        generation_id=generation_id,
        dataset=dataset,
        before=before,
        after=after,
        detail=detail,
    )
    session.add(event)
    return event


def list_events(
    session: Session,
    *,
    user_id: int | None = None,
    action: str | None = None,
    dataset: str | None = None,
    generation_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = 500,
) -> list[Event]:
    """Events newest first, filtered (`action`: that action or any under it, "annotation" for
    annotation.save); `limit=None` reads them all."""
    query = select(Event).order_by(Event.id.desc())
    if limit is not None:
        query = query.limit(limit)
    if user_id is not None:
        query = query.where(Event.user_id == user_id)
    if action is not None and action.strip():
        # A prefix, whole words: "annotation" finds annotation.save and annotation.skip (not "annotations.x").
        action = action.strip().removesuffix(".")
        query = query.where((Event.action == action) | Event.action.startswith(action + ".", autoescape=True))
    if dataset is not None:
        query = query.where(Event.dataset == dataset)
    if generation_id is not None:
        query = query.where(Event.generation_id == generation_id)
    if since is not None:
        query = query.where(Event.at >= since)
    if until is not None:
        query = query.where(Event.at <= until)
    return list(session.scalars(query))
