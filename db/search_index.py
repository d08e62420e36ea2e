"""The full-text index of reference passages, which the ORM does not describe.

SQLite gets an FTS5 table over `passages` (external content, kept in step by triggers);
PostgreSQL a generated `tsvector` column with a GIN index. Migration 0007 creates them with
`create_statements`, `db.references` queries them, and the schema check skips them
(`is_search_object`), because the ORM's schema is the same on both databases.
"""

from __future__ import annotations

FTS_TABLE = "passages_fts"
PG_COLUMN = "search_vector"
PG_INDEX = "ix_passages_search_vector"
PG_CONFIG = "english"

_SQLITE_CREATE = [
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(text, content='passages', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2')",
    f"CREATE TRIGGER {FTS_TABLE}_ai AFTER INSERT ON passages BEGIN "
    f"INSERT INTO {FTS_TABLE}(rowid, text) VALUES (new.id, new.text); END",
    f"CREATE TRIGGER {FTS_TABLE}_ad AFTER DELETE ON passages BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, text) VALUES ('delete', old.id, old.text); END",
    f"CREATE TRIGGER {FTS_TABLE}_au AFTER UPDATE ON passages BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, text) VALUES ('delete', old.id, old.text); "
    f"INSERT INTO {FTS_TABLE}(rowid, text) VALUES (new.id, new.text); END",
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')",
]
_SQLITE_DROP = [
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_ai",
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_ad",
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_au",
    f"DROP TABLE IF EXISTS {FTS_TABLE}",
]
_PG_CREATE = [
    f"ALTER TABLE passages ADD COLUMN {PG_COLUMN} tsvector "
    f"GENERATED ALWAYS AS (to_tsvector('{PG_CONFIG}', text)) STORED",
    f"CREATE INDEX {PG_INDEX} ON passages USING gin ({PG_COLUMN})",
]
_PG_DROP = [f"DROP INDEX IF EXISTS {PG_INDEX}", f"ALTER TABLE passages DROP COLUMN IF EXISTS {PG_COLUMN}"]


def create_statements(dialect: str) -> list[str]:
    """The DDL that builds the index on this database (SQLite or PostgreSQL)."""
    return _SQLITE_CREATE if dialect == "sqlite" else _PG_CREATE


def drop_statements(dialect: str) -> list[str]:
    return _SQLITE_DROP if dialect == "sqlite" else _PG_DROP


def is_search_object(name: str | None) -> bool:
    """A table, column or index of the search index (FTS5's shadow tables included)."""
    return bool(name) and (str(name).startswith(FTS_TABLE) or name in (PG_COLUMN, PG_INDEX))
