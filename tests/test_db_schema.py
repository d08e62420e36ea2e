"""The migrations build exactly the ORM schema, run both ways, and SQLite gets its pragmas."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from db.migrate import MIGRATIONS, current_revision, downgrade, upgrade
from db.models import Base


def _differences(engine) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)


def _tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names())


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
            conn.execute(text('INSERT INTO spans (set_id, start, "end", label) VALUES (424242, 0, 1, \'N/A\')'))
