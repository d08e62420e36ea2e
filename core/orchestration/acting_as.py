"""Who is doing something, checked inside the transaction that writes it.

An orchestration step that opens its own transaction (creating a run row, registering or
promoting a probe) takes `ActingAs`: a callable that, given that transaction's session, returns
the acting account after checking it (the actions pass `acting.checker(...)`, which re-reads
the sign-in and the role), or raises `UserError` so the transaction writes nothing. Scripts and
the CLI, which act for a known account (or nobody), pass its id or None.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from db.models import User
from db.users import user_by_id

ActingAs = Callable[[Session], User | None]


def acting_as(actor: int | None | ActingAs, session: Session) -> User | None:
    """The acting account for `session`'s transaction: a checker's verdict, or the account by id."""
    if callable(actor):
        return actor(session)
    return user_by_id(session, actor)
