"""Revoked or deactivated sessions cannot act through callbacks and fragments: every page's
write actions re-check the person inside their own transaction (core/orchestration/actions/
acting.py), so an open tab whose account was deactivated, whose sign-in was revoked, whose
password was reset or whose role no longer allows the page changes nothing and logs nothing.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from core.base.errors import UserError
from core.base.types import Span
from core.orchestration import batch, retrain
from core.orchestration.actions import account, annotate, data, generate, probes, review, runs, users
from tests.support.actions import team_on, word_trace


def _run(storage, kind: str) -> int:
    from db.train_runs import create_run

    with storage.sessions() as session, session.begin():
        return create_run(session, kind, {}, None).id


RUN_OF = {"data.cancel": "generate", "seed.cancel": "seed", "probes.cancel": "retrain"}  # made before the change
JSONL = b'{"conversation": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]}\n'

# (page, who acts, the action) — every write a page offers
WRITES = {
    "annotate.save": ("annotate", "ann", lambda t, a: annotate.save_annotation(t.storage, a, t.ids[0], [], 0)),
    "annotate.skip": ("annotate", "ann", lambda t, a: annotate.skip(t.storage, a, t.ids[0])),
    "annotate.unskip": ("annotate", "ann", lambda t, a: annotate.unskip(t.storage, a, t.ids[0])),
    "annotate.comment": (
        "annotate",
        "ann",
        lambda t, a: annotate.add_comment(t.storage, a, t.ids[0], "still here", flag=True),
    ),
    "annotate.resolve": ("annotate", "ann", lambda t, a: annotate.resolve_flags(t.storage, a, t.ids[0])),
    "annotate.guidelines": ("annotate", "boss", lambda t, a: annotate.save_guidelines(t.storage, a, "rules", 0)),
    "generate.save": (
        "generate",
        "ann",
        lambda t, a: generate.save_answer(
            t.storage,
            a,
            "playground",
            [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "Paris."}],
            word_trace("Paris."),
            model_id="m",
            probe_version=None,
        ),
    ),
    "review.merged": (
        "review",
        "rita",
        lambda t, a: review.save_merged_gold(t.storage, a, t.ids[0], [Span(0, 4, "Supported")], 0),
    ),
    "review.whole": ("review", "rita", lambda t, a: review.take_annotator_set(t.storage, a, t.ids[0], "bea", 0)),
    "review.assign": ("review", "rita", lambda t, a: review.assign_work(t.storage, a, "set1", 1, ["bea"], 24.0)),
    "data.import": (
        "data",
        "boss",
        lambda t, a: data.import_data(t.storage, a, JSONL, "x.jsonl", dataset="new", split="train", as_user=None),
    ),
    "data.overlap": ("data", "boss", lambda t, a: data.set_overlap(t.storage, a, "set1", 2, 100)),
    "data.delete": ("data", "boss", lambda t, a: data.delete_dataset(t.storage, a, "set1")),
    "data.batch": (
        "data",
        "boss",
        lambda t, a: data.start_batch(
            t.storage, a, batch.BatchParams(prompts=[[{"role": "user", "content": "Q?"}]], dataset="b")
        ),
    ),
    "data.cancel": ("data", "boss", lambda t, a: runs.cancel_run(t.storage, a, t.run)),
    "seed.cancel": ("data", "boss", lambda t, a: runs.cancel_run(t.storage, a, t.run)),
    "seed.restart": ("data", "boss", lambda t, a: runs.restart_seed(t.storage, a)),
    "annotate.rescore": ("probes", "boss", lambda t, a: annotate.start_rescore(t.storage, a, 1)),
    "probes.cancel": ("probes", "boss", lambda t, a: runs.cancel_run(t.storage, a, t.run)),
    "probes.retrain": ("probes", "boss", lambda t, a: probes.start_retrain(t.storage, a, retrain.RetrainParams())),
    "probes.promote": ("probes", "boss", lambda t, a: probes.activate(t.storage, a, 1)),
    "probes.upload": ("probes", "boss", lambda t, a: probes.upload(t.storage, None, a, b"PK")),
    "users.add": ("users", "boss", lambda t, a: users.add_user(t.storage, a, "eve", "eve-password", "admin")),
    "users.role": ("users", "boss", lambda t, a: users.set_role(t.storage, a, "ann", "admin")),
    "users.deactivate": ("users", "boss", lambda t, a: users.deactivate(t.storage, a, "root")),
    "users.reset": ("users", "boss", lambda t, a: users.reset_password(t.storage, a, "root", "taken-over")),
    "users.api_key": ("users", "boss", lambda t, a: users.create_api_key(t.storage, a, "ann", "laptop")),
    "users.revoke_key": ("users", "boss", lambda t, a: users.revoke_api_key(t.storage, a, 1)),
}


def _deactivated(team, name):
    from db.models import User

    with team.storage.sessions() as session, session.begin():
        session.execute(update(User).where(User.name == name).values(active=False))


def _revoked(team, name):
    account.sign_out(team.storage, team.actors[name].token)


def _password_reset(team, name):
    users.reset_password(team.storage, team.actors["root"], name, "a-new-password")


def _demoted(team, name):
    from db.models import User

    with team.storage.sessions() as session, session.begin():  # a role change the open tab has not seen
        session.execute(update(User).where(User.name == name).values(role="annotator"))


CHANGES = {"deactivated": _deactivated, "revoked": _revoked, "password reset": _password_reset, "demoted": _demoted}
CASES = [
    pytest.param(write, change, id=f"{write}-{change.replace(' ', '-')}")
    for write, (page, _who, _act) in WRITES.items()
    for change in CHANGES
    if not (change == "demoted" and page in ("annotate", "generate"))  # every role may open those
    if not (change == "password reset" and write == "users.reset")  # root resets: root must stay able to
]


def _counts(storage) -> tuple[int, ...]:
    from db.models import AnswerComment, Event, Generation, Skip, TrainRun

    with storage.sessions() as session:
        cancelled = session.scalar(select(func.count(TrainRun.id)).where(TrainRun.cancel_requested.is_(True)))
        return (
            *(session.scalar(select(func.count(m.id))) for m in (Event, Generation, Skip, AnswerComment, TrainRun)),
            cancelled,
        )


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A new team per test (the changes are not undone), made from one seeded file copied."""
    import shutil

    seeded = tmp_path_factory.mktemp("seeded")
    team = team_on(seeded)
    team.storage.dispose()

    def make(tmp_path):
        from db import open_database

        shutil.copy(seeded / "actions.db", tmp_path / "actions.db")
        team.storage = open_database(f"sqlite:///{tmp_path / 'actions.db'}")
        return team

    return make


@pytest.mark.parametrize(("write", "change"), CASES)
def test_a_changed_account_cannot_write_through_an_open_page(fresh, tmp_path, write, change):
    team = fresh(tmp_path)
    try:
        page, who, act = WRITES[write]
        if write in RUN_OF:
            team.run = _run(team.storage, RUN_OF[write])
        if write == "annotate.resolve":
            annotate.add_comment(team.storage, team.actors["ann"], team.ids[0], "flag", flag=True)
        CHANGES[change](team, who)
        before = _counts(team.storage)
        with pytest.raises(UserError, match="session has ended|no longer active|no longer allows"):
            act(team, team.actors[who])
        assert _counts(team.storage) == before, "nothing was stored or logged"
    finally:
        team.storage.dispose()


def test_the_same_writes_go_through_for_an_unchanged_account(fresh, tmp_path):
    """The refusals above are the check's, not the actions': unchanged, they act and log who."""
    team = fresh(tmp_path)
    try:
        for write in (
            "annotate.comment",
            "annotate.skip",
            "review.assign",
            "probes.cancel",
            "users.add",
            "users.api_key",
        ):
            _page, who, act = WRITES[write]
            team.run = _run(team.storage, RUN_OF[write]) if write in RUN_OF else None
            before = _counts(team.storage)
            act(team, team.actors[who])
            assert _counts(team.storage)[0] > before[0], f"{write} logged an event"
    finally:
        team.storage.dispose()
