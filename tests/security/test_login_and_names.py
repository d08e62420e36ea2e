"""Findings 6 and 7: sign-in tells nobody which names exist or lets them lock an admin out;
user names cannot impersonate, hide characters, or forge the CLI's listing."""

from __future__ import annotations

import statistics
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

import db.users as users
from core.base.errors import UserError
from core.orchestration.cli import main
from db.models import User, utcnow
from tests.support.apptest import add_users


def _attempt(database, name: str, password: str, now) -> tuple[str, float]:
    started = time.perf_counter()
    try:
        users.login(database, name, password, now=now)
        outcome = "signed in"
    except UserError as exc:
        outcome = str(exc)
    return outcome, time.perf_counter() - started


def test_unknown_names_wrong_passwords_and_slowed_names_look_and_wait_the_same(sqlite_db, monkeypatch):
    add_users(sqlite_db, ("admin", "admin-password", "admin"))
    waits: dict[str, list[float]] = {"admin": [], "nobody": []}
    current: list[str] = []
    monkeypatch.setattr(users, "sleep", lambda s: waits[current[0]].append(round(s, 6)))
    start = utcnow()
    messages = set()
    for name in ("admin", "nobody"):
        current[:] = [name]
        for n in range(8):
            outcome, _ = _attempt(sqlite_db, name, "wrong-guess", start + timedelta(seconds=n))
            messages.add(outcome)
    assert messages == {users.BAD_LOGIN}, "one message for every failure, existing name or not"
    assert waits["admin"] == waits["nobody"] and waits["admin"], "the same slow-down, existing name or not"
    # and the admin is never locked out: the right password still gets in after the wait
    current[:] = ["admin"]
    assert _attempt(sqlite_db, "admin", "admin-password", start + timedelta(seconds=8))[0] == "signed in"


@pytest.mark.real_password_hashing
def test_an_unknown_name_takes_as_long_as_a_wrong_password(sqlite_db):
    """Real argon2 cost, medians of several tries: the old 9 ms vs 300 ms gap is gone."""
    add_users(sqlite_db, ("admin", "admin-password", "admin"))
    users._unknown_failures.clear()
    now = utcnow()
    wrong = [_attempt(sqlite_db, "admin", "wrong-guess", now)[1] for _ in range(4)]
    unknown = [_attempt(sqlite_db, f"ghost{n}", "wrong-guess", now)[1] for n in range(4)]
    ratio = statistics.median(unknown) / statistics.median(wrong)
    assert 0.5 < ratio < 2.0, f"unknown {statistics.median(unknown):.3f} s vs wrong {statistics.median(wrong):.3f} s"


@pytest.mark.parametrize(
    "name",
    ["Ann", "ANN", "\uff41nn", " ann", "ann ", "a/nn", "a\\nn", "an\u200bn", "an\u202en", "an\tn", "an\nn", "an\x00n"],
)
def test_a_lookalike_or_hostile_name_is_refused_and_nothing_is_written(sqlite_db, name):
    add_users(sqlite_db, ("ann", "ann-password", "annotator"))
    with pytest.raises(UserError) as refused:
        add_users(sqlite_db, (name, "another-password", "annotator"))
    assert "\n" not in str(refused.value)
    with sqlite_db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1


def test_the_cli_listing_cannot_be_forged_by_an_old_name(sqlite_db, monkeypatch, capsys):
    # a name written before the rules (straight into the table) tries to add a fake admin line
    with sqlite_db.sessions() as session, session.begin():
        session.add(
            User(name="mallory\tadmin\tactive\nroot", role="annotator", active=True, failed_logins=0, password_hash="x")
        )
    monkeypatch.setenv("DATABASE_URL", sqlite_db.engine.url.render_as_string(hide_password=False))
    assert main(["users", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert lines[0].split("\t") == ["mallory\\tadmin\\tactive\\nroot", "annotator", "active"]
