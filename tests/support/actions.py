"""A small team on a real SQLite file, signed in through the account actions (no browser).

Used by tests/test_actions_*.py and tests/security/test_actions_after_revocation.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from core.base.types import Generation, TokenTrace

ANSWERS = ["Lviv was founded in 1256 by Daniel.", "Marie Curie won the Nobel Prize in 1903."]
PEOPLE = (("ann", "annotator"), ("bea", "annotator"), ("rita", "reviewer"), ("boss", "admin"), ("root", "admin"))


def word_trace(text: str) -> TokenTrace:
    """Word-ish tokens (each keeps its leading space), so no model is needed."""
    bounds = [(m.start(), m.end()) for m in re.finditer(r"\s*\S+", text)]
    return TokenTrace(
        list(range(len(bounds))), [text[a:b] for a, b in bounds], bounds, [-1.0] * len(bounds), [1.0] * len(bounds)
    )


@dataclass
class Team:
    storage: object
    actors: dict  # name -> Actor (signed in: each holds its own session token)
    ids: list[int]  # the answers of dataset "set1"
    run: int | None = None  # a run a test made


def team_on(tmp_path: Path) -> Team:
    """A migrated SQLite file with PEOPLE (password "<name>-password"), dataset "set1" with
    ANSWERS, and every person signed in once."""
    from core.orchestration.actions import account
    from db import open_database
    from db.generations import add_generation, get_or_create_dataset
    from db.users import add_user

    storage = open_database(f"sqlite:///{tmp_path / 'actions.db'}")
    with storage.sessions() as session, session.begin():
        for name, role in PEOPLE:
            add_user(session, name, f"{name}-password", role=role)
        dataset = get_or_create_dataset(session, "set1")
        ids = []
        for i, text in enumerate(ANSWERS):
            gen = Generation([{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": text}])
            ids.append(add_generation(session, dataset, gen, trace=word_trace(text)).id)
    actors = {name: account.sign_in(storage, name, f"{name}-password") for name, _role in PEOPLE}
    return Team(storage, actors, ids)


def events(storage, action: str | None = None) -> list:
    """Every event (oldest first), optionally of one action."""
    from sqlalchemy import select

    from db.models import Event

    with storage.sessions() as session:
        query = select(Event).order_by(Event.id)
        if action is not None:
            query = query.where(Event.action == action)
        return list(session.scalars(query))


def user_id(storage, name: str) -> int:
    from db.users import get_user

    with storage.sessions() as session:
        return get_user(session, name).id
