"""The migrations build exactly the ORM schema, run both ways, and SQLite gets its pragmas."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from db.migrate import MIGRATIONS, current_revision, downgrade, upgrade
from db.models import Base
from db.search_index import is_search_object
from tests.support.schema import schema_differences


def _differences(engine) -> list:
    with engine.connect() as conn:
        return schema_differences(conn)


def _tables(engine) -> set[str]:
    return {name for name in inspect(engine).get_table_names() if not is_search_object(name)}


def _head() -> str:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def test_migrated_schema_matches_models(any_db):
    assert current_revision(any_db.engine) == _head()
    assert _differences(any_db.engine) == []
    assert _tables(any_db.engine) == set(Base.metadata.tables) | {"alembic_version"}


def test_downgrade_to_base_and_upgrade_again(any_db):
    downgrade(any_db.engine, "base")
    assert current_revision(any_db.engine) is None
    assert _tables(any_db.engine) <= {"alembic_version"}
    upgrade(any_db.engine)
    assert current_revision(any_db.engine) == _head()
    assert _differences(any_db.engine) == []


def test_upgrade_is_idempotent(any_db):
    upgrade(any_db.engine)
    assert current_revision(any_db.engine) == _head()


def test_sqlite_pragmas_are_on(sqlite_db):
    with sqlite_db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0


def test_foreign_keys_are_enforced(any_db):
    with pytest.raises(IntegrityError):
        with any_db.engine.begin() as conn:
            conn.execute(text("INSERT INTO spans (set_id, start, \"end\", label) VALUES (424242, 0, 1, 'N/A')"))


def test_0003_adds_skips_comments_and_guidelines_and_goes_back(any_db):
    """Migration 0003 (issue #14): three new tables on a database at 0002 with data; the data stays."""
    downgrade(any_db.engine, "0002")
    assert not {"skips", "answer_comments", "guidelines"} & _tables(any_db.engine)
    with any_db.engine.begin() as conn:
        conn.execute(text("INSERT INTO datasets (name, created_at) VALUES ('kept', CURRENT_TIMESTAMP)"))
    upgrade(any_db.engine, "0003")
    assert {"skips", "answer_comments", "guidelines"} <= _tables(any_db.engine)
    assert "probe_files" not in _tables(any_db.engine)  # 0004's (tests/test_probe_files_migration.py)
    with any_db.engine.begin() as conn:
        assert conn.execute(text("SELECT name FROM datasets")).scalars().all() == ["kept"]
        conn.execute(text("INSERT INTO guidelines (version, body, created_at) VALUES (1, 'rules', CURRENT_TIMESTAMP)"))
    with pytest.raises(IntegrityError):  # one row per version
        with any_db.engine.begin() as conn:
            conn.execute(text("INSERT INTO guidelines (version, body, created_at) VALUES (1, 'x', CURRENT_TIMESTAMP)"))
    downgrade(any_db.engine, "0002")
    assert not {"skips", "answer_comments", "guidelines"} & _tables(any_db.engine)
    upgrade(any_db.engine)
    assert current_revision(any_db.engine) == _head()
    assert _differences(any_db.engine) == []
