"""Per-answer comments, and flags that ask a reviewer to look (Label Studio's comments, Argilla's
"needs review"): stored, listed for reviewers until resolved, every change an event.

Comment text is untrusted: pages show it through `md_escape` or as plain table cells.
Functions take a Session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, aliased

from core.base.errors import UserError
from db.assignments import chunks, clock, utc
from db.engine import rows_matched
from db.events import log_event
from db.models import AnswerComment, Dataset, Generation, Role, User

MAX_COMMENT_CHARS = 2000
ENTITY = "answer_comment"
REVIEW_ROLES = (Role.REVIEWER.value, Role.ADMIN.value)


@dataclass(frozen=True)
class Comment:
    """A comment as pages show it (names resolved; `open_flag`: flagged and not yet resolved)."""

    id: int
    generation_id: int
    dataset: str
    author: str | None
    body: str
    flagged: bool
    created_at: datetime | None
    resolved_at: datetime | None
    resolved_by: str | None

    @property
    def open_flag(self) -> bool:
        return self.flagged and self.resolved_at is None


def _clean_body(body: object) -> str:
    if not isinstance(body, str):
        raise UserError("a comment must be text")
    text = body.replace("\r\n", "\n").strip()
    if len(text) > MAX_COMMENT_CHARS:
        raise UserError(f"a comment can hold at most {MAX_COMMENT_CHARS} characters (this one has {len(text)})")
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        raise UserError("a comment cannot contain control characters")
    return text


def add_comment(
    session: Session, generation_id: int, body: str, *, author: User, flag: bool = False, now: datetime | None = None
) -> AnswerComment:
    """Store a comment (and, with `flag`, a request for review); an empty comment is allowed only
    as a bare flag. One `comment.add` event."""
    text = _clean_body(body)
    if not text and not flag:
        raise UserError("write a comment (or tick 'Flag for review')")
    if isinstance(generation_id, bool) or not isinstance(generation_id, int):
        raise UserError(f"an answer id must be a whole number, not {generation_id!r}")
    generation = session.get(Generation, generation_id)
    if generation is None:
        raise UserError(f"unknown answer #{generation_id}")
    row = AnswerComment(
        generation_id=generation_id, user_id=author.id, body=text, flagged=bool(flag), created_at=clock(now)
    )
    session.add(row)
    session.flush()
    log_event(
        session,
        user=author,
        action="comment.add",
        entity=ENTITY,
        entity_id=row.id,
        generation_id=generation_id,
        dataset=generation.dataset.name,
        after={"body": text, "flagged": bool(flag)},
        detail=("flagged" if flag else "commented on") + f" answer #{generation_id}",
    )
    return row


def resolve_flags(session: Session, generation_id: int, *, actor: User, now: datetime | None = None) -> int:
    """Close every open flag on the answer; returns how many. Reviewers and admins may, and so may
    the person who raised a flag (for their own flags only)."""
    query = update(AnswerComment).where(
        AnswerComment.generation_id == generation_id,
        AnswerComment.flagged.is_(True),
        AnswerComment.resolved_at.is_(None),
    )
    if actor.role not in REVIEW_ROLES:
        mine = session.scalar(
            select(AnswerComment.id).where(
                AnswerComment.generation_id == generation_id,
                AnswerComment.flagged.is_(True),
                AnswerComment.resolved_at.is_(None),
                AnswerComment.user_id != actor.id,
            )
        )
        if mine is not None:
            raise UserError("only a reviewer or an admin can resolve someone else's flag")
        query = query.where(AnswerComment.user_id == actor.id)
    moment = clock(now)
    closed = (
        rows_matched(
            session.execute(
                query.values(resolved_at=moment, resolved_by=actor.id).execution_options(synchronize_session="fetch")
            )
        )
        or 0
    )
    if closed:
        generation = session.get(Generation, generation_id)
        log_event(
            session,
            user=actor,
            action="comment.resolve",
            entity=ENTITY,
            generation_id=generation_id,
            dataset=generation.dataset.name if generation else None,
            after={"resolved": closed},
            detail=f"resolved {closed} flag{'s' if closed != 1 else ''} on answer #{generation_id}",
        )
    return closed


def _comment_query():
    author, resolver = aliased(User), aliased(User)
    return (
        select(AnswerComment, Dataset.name, author.name, resolver.name)
        .join(Generation, Generation.id == AnswerComment.generation_id)
        .join(Dataset, Dataset.id == Generation.dataset_id)
        .outerjoin(author, author.id == AnswerComment.user_id)
        .outerjoin(resolver, resolver.id == AnswerComment.resolved_by)
    )


def _comment(row: AnswerComment, dataset: str, author: str | None, resolver: str | None) -> Comment:
    return Comment(
        id=row.id,
        generation_id=row.generation_id,
        dataset=dataset,
        author=author,
        body=row.body,
        flagged=bool(row.flagged),
        created_at=utc(row.created_at),
        resolved_at=utc(row.resolved_at),
        resolved_by=resolver,
    )


def comments_for(session: Session, generation_id: int) -> list[Comment]:
    """Every comment on one answer, oldest first."""
    query = _comment_query().where(AnswerComment.generation_id == generation_id).order_by(AnswerComment.id)
    return [_comment(*row) for row in session.execute(query)]


def open_flags(session: Session, dataset: str | None = None, *, limit: int = 200) -> list[Comment]:
    """Unresolved flags (newest first), with the comment that raised each, for the Review page."""
    query = _comment_query().where(AnswerComment.flagged.is_(True), AnswerComment.resolved_at.is_(None))
    if dataset is not None:
        query = query.where(Dataset.name == dataset)
    query = query.order_by(AnswerComment.id.desc()).limit(limit)
    return [_comment(*row) for row in session.execute(query)]


def flagged_ids(session: Session, generation_ids: list[int]) -> set[int]:
    """Which of these answers have an open flag (for the queue's flag column)."""
    if not generation_ids:
        return set()
    found: set[int] = set()
    for chunk in chunks(generation_ids):
        found.update(
            session.scalars(
                select(AnswerComment.generation_id).where(
                    AnswerComment.generation_id.in_(chunk),
                    AnswerComment.flagged.is_(True),
                    AnswerComment.resolved_at.is_(None),
                )
            )
        )
    return found


def list_comments(
    session: Session, *, generation_id: int | None = None, dataset: str | None = None, open_only: bool = False
) -> list[Comment]:
    """Comments (oldest first) of one answer, a dataset or all, optionally open flags only (the CLI)."""
    query = _comment_query()
    if generation_id is not None:
        query = query.where(AnswerComment.generation_id == generation_id)
    if dataset is not None:
        query = query.where(Dataset.name == dataset)
    if open_only:
        query = query.where(AnswerComment.flagged.is_(True), AnswerComment.resolved_at.is_(None))
    return [_comment(*row) for row in session.execute(query.order_by(AnswerComment.id))]


def comments_by_answer(session: Session, generation_ids: list[int]) -> dict[int, list[Comment]]:
    """Every comment of these answers, oldest first, by answer (exports read a chunk at a time)."""
    found: dict[int, list[Comment]] = {}
    for chunk in chunks(generation_ids):
        query = _comment_query().where(AnswerComment.generation_id.in_(chunk)).order_by(AnswerComment.id)
        for row in session.execute(query):
            comment = _comment(*row)
            found.setdefault(comment.generation_id, []).append(comment)
    return found


def restore_comment(
    session: Session,
    generation_id: int,
    body: str,
    *,
    author: User,
    flagged: bool,
    created_at: datetime | None,
    resolved_at: datetime | None,
    resolved_by: User | None,
) -> AnswerComment:
    """An imported comment: stored as `add_comment` stores one (same checks, one event), then its
    resolution as the file says (an exported comment keeps whether its flag was resolved)."""
    row = add_comment(session, generation_id, body, author=author, flag=flagged, now=created_at)
    if flagged and resolved_at is not None:
        row.resolved_at = clock(resolved_at)
        row.resolved_by = resolved_by.id if resolved_by is not None else None
        session.flush()
    return row


def open_flag_count(session: Session) -> int:
    """Unresolved flags in every dataset: the badge on the Review page's link."""
    query = select(func.count(AnswerComment.id)).where(
        AnswerComment.flagged.is_(True), AnswerComment.resolved_at.is_(None)
    )
    return int(session.scalar(query) or 0)
