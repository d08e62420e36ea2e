"""Security, second round, item 1: a wrong password never stalls anybody else.

A sign-in that waits out its slow-down holds no transaction, so other people's writes and
page reads go on; failures that arrive together are each counted; a page run's reads take no
write lock. The Chromium test is in tests/security/test_sign_in_stall_browser.py.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select

import db.users as users
from core.base.errors import UserError
from db.models import User, utcnow
from db.sessions import create_session, peek
from tests.support.apptest import add_users


def _guess(database, name: str) -> str:
    try:
        users.login(database, name, "wrong-guess")
        return "signed in"
    except UserError as exc:
        return str(exc)


def _slow_down(database, name: str, failures: int = users.MAX_FAILED_LOGINS + 2) -> None:
    """Put `name` into its slow-down (its next try waits a few seconds)."""
    with database.sessions() as session, session.begin():
        user = users.get_user(session, name)
        user.failed_logins = failures
        user.locked_until = utcnow() + timedelta(seconds=3)


@pytest.mark.parametrize("name", ["alice", "nobody-at-all"])
def test_a_sign_in_waiting_out_its_slow_down_blocks_no_writer(sqlite_db, name):
    add_users(sqlite_db, ("alice", "alice-password", "annotator"), ("bob", "bob-password", "admin"))
    users._unknown_failures.clear()
    if name == "alice":
        _slow_down(sqlite_db, "alice")
    else:  # an unknown name is slowed down alike, and must not hold a lock either
        for _ in range(users.MAX_FAILED_LOGINS + 2):
            _guess(sqlite_db, name)
    started = threading.Event()
    outcome: list[str] = []

    def guesser() -> None:
        started.set()
        outcome.append(_guess(sqlite_db, name))

    thread = threading.Thread(target=guesser)
    begun = time.monotonic()
    thread.start()
    started.wait()
    time.sleep(0.3)  # the guesser is now inside its wait
    t0 = time.monotonic()
    with sqlite_db.sessions() as session, session.begin():  # someone else saves something
        create_session(session, users.get_user(session, "bob"))
    write_seconds = time.monotonic() - t0
    with sqlite_db.reading() as session:
        assert users.get_user(session, "bob").name == "bob"
    read_seconds = time.monotonic() - t0
    thread.join(timeout=30)
    assert outcome == [users.BAD_LOGIN]
    assert time.monotonic() - begun >= 0.9, "the guess itself was slowed down"
    assert write_seconds < 0.5 and read_seconds < 0.6, (write_seconds, read_seconds)


def test_failures_that_arrive_together_are_each_counted(any_db):
    add_users(any_db, ("alice", "alice-password", "annotator"))
    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(lambda _n: _guess(any_db, "alice"), range(12)))
    assert outcomes == [users.BAD_LOGIN] * 12
    with any_db.reading() as session:
        assert session.scalar(select(User.failed_logins).where(User.name == "alice")) == 12


def test_page_reads_take_no_write_lock_and_cannot_write(sqlite_db):
    add_users(sqlite_db, ("alice", "alice-password", "annotator"))
    holder = sqlite_db.sessions()
    holder.begin()
    users.get_user(holder, "alice").failed_logins = 3
    holder.flush()  # the write lock is held until the holder commits
    try:
        t0 = time.monotonic()
        with sqlite_db.reading() as session:
            assert users.get_user(session, "alice").failed_logins == 0  # the last committed state
        with sqlite_db.sessions() as session:  # a session used without begin() only reads too
            token_user, _ = peek(session, "no-such-token", timedelta(hours=1))
            assert token_user is None
        assert time.monotonic() - t0 < 1.0
        with sqlite_db.sessions() as session:
            users.get_user(session, "alice").failed_logins = 99
            with pytest.raises(RuntimeError, match="explicit transaction"):
                session.flush()
    finally:
        holder.rollback()
        holder.close()
