"""Backups: SQLite round trip through the online backup API; PostgreSQL points at pg_dump."""

from __future__ import annotations

import sqlite3

import pytest

import db.users as users
from core.base.errors import UserError
from core.base.types import Span
from db import open_database
from db.annotations import get_set, save_annotation_set, spans_of
from db.backup import backup, restore
from db.engine import transaction


def _snapshot(db, generation_id):
    with db.sessions() as session:
        gold = get_set(session, generation_id, None)
        names = [u.name for u in users.list_users(session)]
        return names, gold.version, spans_of(gold)


def test_round_trip(sqlite_db, make_generation, tmp_path):
    with transaction(sqlite_db.sessions) as session:
        alice = users.add_user(session, "alice", "password123")
        gid = make_generation(session, "Paris is the capital of France.").id
        save_annotation_set(session, gid, [Span(0, 5, "Supported")], owner=None, expected_version=0, actor=alice)
    saved = _snapshot(sqlite_db, gid)
    out = backup(sqlite_db, tmp_path / "backups" / "one.db")  # taken while the database is open
    assert out.is_file() and not out.with_name("one.db.partial").exists()

    with transaction(sqlite_db.sessions) as session:  # changes after the backup...
        users.add_user(session, "bob", "password123")
        save_annotation_set(session, gid, [Span(6, 8, "hallucinated")], owner=None, expected_version=1, actor=alice)
    assert _snapshot(sqlite_db, gid) != saved
    url = sqlite_db.url
    sqlite_db.dispose()  # "stop the app"

    restore(url, out)  # ...are gone after the restore
    reopened = open_database(url)
    try:
        assert _snapshot(reopened, gid) == saved
        with reopened.sessions() as session, session.begin():
            assert users.authenticate(session, "alice", "password123").name == "alice"
    finally:
        reopened.dispose()


def test_restore_into_a_new_file(sqlite_db, tmp_path):
    out = backup(sqlite_db, tmp_path / "b.db")
    target = tmp_path / "elsewhere" / "new.db"
    restore(f"sqlite:///{target}", out)
    fresh = open_database(f"sqlite:///{target}")
    try:
        with fresh.sessions() as session:
            assert users.list_users(session) == []
    finally:
        fresh.dispose()


def test_backup_refuses_to_overwrite(sqlite_db, tmp_path):
    out = tmp_path / "b.db"
    out.write_text("precious")
    with pytest.raises(UserError, match="already exists"):
        backup(sqlite_db, out)
    assert out.read_text() == "precious"
    backup(sqlite_db, out, overwrite=True)
    with sqlite3.connect(out) as conn:
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)


def test_restore_rejects_files_that_are_not_probelens_databases(sqlite_db, tmp_path):
    url = sqlite_db.url
    not_sqlite = tmp_path / "notes.db"
    not_sqlite.write_bytes(b"this is not a database at all" * 100)
    other_sqlite = tmp_path / "other.db"
    with sqlite3.connect(other_sqlite) as conn:
        conn.execute("CREATE TABLE things (id INTEGER)")
    conn.close()
    newer = tmp_path / "newer.db"
    backup(sqlite_db, newer)
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.close()
    cases = [
        (tmp_path / "missing.db", "does not exist"),
        (not_sqlite, "not a SQLite database"),
        (other_sqlite, "no alembic_version"),
        (newer, "schema revision '9999', unknown"),
    ]
    for path, message in cases:
        with pytest.raises(UserError, match=message):
            restore(url, path)


@pytest.mark.postgres
def test_postgres_backup_points_at_pg_dump(pg_db, tmp_path):
    with pytest.raises(UserError, match=r"pg_dump .*--file .*\bdump\.pgc test$") as caught:
        backup(pg_db, tmp_path / "dump.pgc")
    assert "database 'test'" in str(caught.value)
    with pytest.raises(UserError, match="pg_restore"):
        restore("postgresql://root@127.0.0.1:5432/test", tmp_path / "dump.pgc")
    assert not (tmp_path / "dump.pgc").exists()
