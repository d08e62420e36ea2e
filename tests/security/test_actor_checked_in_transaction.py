"""Starting a run, promoting and registering a probe check the actor inside the very transaction
that writes the row, not in a short transaction just before it: a sign-in revoked between the two
could otherwise still start a run. Traced on a real SQLite file with SQLAlchemy's own events: the
transaction that reads `train_runs` to create a run (or `probes` to register one) must also have
re-read the sign-in (`user_sessions`)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event

from core.base.errors import UserError
from core.orchestration import batch, retrain
from core.orchestration.actions import data, probes, runs
from tests.support.actions import team_on


class Transactions:
    """The SQL statements of every transaction on an engine, in order."""

    def __init__(self, engine) -> None:
        self.engine, self.log = engine, []
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "before_cursor_execute", self._statement)

    def _begin(self, _conn) -> None:
        self.log.append([])

    def _statement(self, _conn, _cursor, statement, *_args) -> None:
        if not self.log:
            self.log.append([])
        self.log[-1].append(statement)

    def close(self) -> None:
        event.remove(self.engine, "begin", self._begin)
        event.remove(self.engine, "before_cursor_execute", self._statement)


def _reads(statements: list[str], table: str) -> bool:
    return any(re.search(rf"\bFROM {table}\b", s) for s in statements)


def _running(storage, kind: str) -> None:
    """A run of `kind` already going: the next start of that kind is refused inside its transaction."""
    from db.train_runs import create_run

    with storage.sessions() as session, session.begin():
        create_run(session, kind, {}, None)


STARTS = {
    "batch": (
        "generate",
        "train_runs",
        lambda t, a: data.start_batch(
            t.storage, a, batch.BatchParams(prompts=[[{"role": "user", "content": "Q?"}]], dataset="b")
        ),
    ),
    "retrain": ("retrain", "train_runs", lambda t, a: probes.start_retrain(t.storage, a, retrain.RetrainParams())),
    "seed": ("seed", "train_runs", lambda t, a: runs.restart_seed(t.storage, a)),
    "promote": ("rescore", "train_runs", lambda t, a: probes.activate(t.storage, a, 1)),
}


@pytest.mark.parametrize("start", list(STARTS))
def test_the_actor_is_checked_in_the_transaction_that_writes(tmp_path, tiny_lm, start):
    team = team_on(tmp_path)
    team.lm = tiny_lm  # an upload is checked against a real (tiny) model
    kind, table, act = STARTS[start]
    try:
        if kind is not None:
            _running(team.storage, kind)  # so nothing is launched: the refusal comes after the check
        trace = Transactions(team.storage.engine)
        try:
            with pytest.raises(UserError):
                act(team, team.actors["boss"])
        finally:
            trace.close()
        writing = [t for t in trace.log if _reads(t, table)]
        assert writing, f"no transaction read {table}"
        assert any(_reads(t, "user_sessions") for t in writing), (
            "the sign-in was not re-read in the transaction that writes the row"
        )
    finally:
        team.storage.dispose()


def test_an_upload_checks_the_actor_in_the_registering_transaction(tmp_path, tiny_lm):
    """The files are checked before any transaction (a slow adapter holds no lock); the actor is
    checked first and again inside the transaction that registers the version."""
    from tests.support.probe_zips import probe_zip

    team = team_on(tmp_path)
    try:
        trace = Transactions(team.storage.engine)
        try:
            version = probes.upload(team.storage, tiny_lm, team.actors["boss"], probe_zip(tiny_lm))
        finally:
            trace.close()
        assert version == 1
        registering = [t for t in trace.log if any(re.match(r"\s*INSERT INTO probes\b", s) for s in t)]
        assert registering, "no transaction registered the version"
        assert all(_reads(t, "user_sessions") for t in registering), (
            "the sign-in was not re-read in the transaction that registers the version"
        )
    finally:
        team.storage.dispose()
