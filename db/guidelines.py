"""Annotation guidelines: markdown an admin writes, versioned (who, when), the newest shown to annotators.

Every save appends a version (nothing is overwritten), so "which rules did this label follow?"
stays answerable. The page renders the text as markdown *without* raw HTML
(`st.markdown`, never `unsafe_allow_html`): the admin's formatting works, a `<script>` shows
as text. Functions take a Session and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.base.errors import UserError
from db.assignments import clock, utc
from db.events import log_event
from db.models import Guideline, Role, User

MAX_GUIDELINE_CHARS = 50_000
ENTITY = "guideline"


@dataclass(frozen=True)
class Guidelines:
    version: int
    body: str
    author: str | None
    created_at: datetime | None


def current(session: Session) -> Guidelines | None:
    """The newest version (None until an admin writes some)."""
    row = session.execute(
        select(Guideline, User.name)
        .outerjoin(User, User.id == Guideline.created_by)
        .order_by(Guideline.version.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    found, author = row
    return Guidelines(found.version, found.body, author, utc(found.created_at))


def history(session: Session, limit: int = 50) -> list[Guidelines]:
    """Versions, newest first."""
    rows = session.execute(
        select(Guideline, User.name)
        .outerjoin(User, User.id == Guideline.created_by)
        .order_by(Guideline.version.desc())
        .limit(limit)
    )
    return [Guidelines(g.version, g.body, author, utc(g.created_at)) for g, author in rows]


def save(session: Session, body: str, *, actor: User, expected_version: int, now: datetime | None = None) -> Guidelines:
    """Store a new version written by an active admin. `expected_version` is the version the
    editor showed: if someone saved since, the save is refused (nothing is overwritten)."""
    if actor is None or not actor.active or actor.role != Role.ADMIN.value:
        raise UserError("only an admin can change the guidelines")
    if not isinstance(body, str):
        raise UserError("the guidelines must be text")
    text = body.replace("\r\n", "\n").strip()
    if not text:
        raise UserError("the guidelines are empty; write something first")
    if len(text) > MAX_GUIDELINE_CHARS:
        raise UserError(
            f"the guidelines can hold at most {MAX_GUIDELINE_CHARS:,} characters (these have {len(text):,})"
        )
    newest = int(session.scalar(select(func.max(Guideline.version))) or 0)
    if expected_version != newest:
        raise UserError(
            f"someone saved version {newest} of the guidelines after you opened them; reload to see it, then edit again"
        )
    previous = current(session)
    if previous is not None and previous.body == text:
        raise UserError(f"nothing changed since version {newest}")
    moment = clock(now)
    row = Guideline(version=newest + 1, body=text, created_by=actor.id, created_at=moment)
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise UserError("someone saved the guidelines at the same moment; reload and try again") from None
    log_event(
        session,
        user=actor,
        action="guidelines.save",
        entity=ENTITY,
        entity_id=row.id,
        before={"version": newest, "body": previous.body if previous else None},
        after={"version": row.version, "body": text},
        detail=f"guidelines version {row.version}",
    )
    return Guidelines(row.version, text, actor.name, moment)
