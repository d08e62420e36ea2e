"""Backups: SQLite through its online backup API; PostgreSQL is pointed at pg_dump.

The online backup API copies a consistent snapshot while the app keeps running (WAL
included), which a plain file copy of a live WAL database does not guarantee.
Restoring replaces the live database: stop the app (and any worker) first.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
from contextlib import closing
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, make_url

from core.base.errors import UserError
from db import Database
from db.engine import SQLITE_BUSY_TIMEOUT_MS, normalise_url
from db.migrate import MIGRATIONS

_TIMEOUT_S = SQLITE_BUSY_TIMEOUT_MS / 1000


def _sqlite_file(url: URL) -> Path:
    if not url.database or url.database == ":memory:" or url.database.startswith("file::memory:"):
        raise UserError("an in-memory SQLite database cannot be backed up or restored")
    return Path(url.database)


def _pg_hint(url: URL, verb: str, path: Path) -> str:
    args = ["-h", url.host or "localhost", "-p", str(url.port or 5432)]
    if url.username:
        args += ["-U", url.username]
    if verb == "dump":
        command = ["pg_dump", *args, "--format=custom", "--file", str(path), url.database or ""]
    else:
        command = ["pg_restore", *args, "--clean", "--if-exists", "--dbname", url.database or "", str(path)]
    return shlex.join(command)


def _unsupported(url: URL, verb: str, path: Path) -> UserError:
    if url.get_backend_name() == "postgresql":
        tool = "pg_dump" if verb == "dump" else "pg_restore"
        return UserError(
            f"PostgreSQL database '{url.database}' is backed up with {tool}, not here: {_pg_hint(url, verb, path)}"
        )
    return UserError(f"backups of {url.get_backend_name()} databases are not supported")


def _copy(source: sqlite3.Connection, target_path: Path) -> None:
    with closing(sqlite3.connect(target_path, timeout=_TIMEOUT_S)) as target:
        source.backup(target)


def backup(db: Database, out: Path, *, overwrite: bool = False) -> Path:
    """Write a consistent copy of a SQLite database to `out` while it stays in use."""
    url = db.engine.url
    out = Path(out)
    if url.get_backend_name() != "sqlite":
        raise _unsupported(url, "dump", out)
    source_path = _sqlite_file(url)
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists; pass overwrite=True (--force) to replace it")
    if out.resolve() == source_path.resolve():
        raise UserError("the backup file must not be the database itself")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    with closing(sqlite3.connect(source_path, timeout=_TIMEOUT_S)) as source:
        _copy(source, partial)
    _check_backup_file(partial)
    os.replace(partial, out)  # never leave a half-written file under the final name
    return out


def _read_only(path: Path) -> str:
    """A URI, percent-encoded so names with '?' or '#' survive."""
    return f"{path.resolve().as_uri()}?mode=ro"


def _check_backup_file(path: Path) -> str:
    """The file must be an intact ProbeLens SQLite database; returns its schema revision."""
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        with closing(sqlite3.connect(_read_only(path), uri=True, timeout=_TIMEOUT_S)) as conn:
            if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise UserError(f"{path} is a damaged SQLite database")
            has_version = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
            ).fetchone()
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchone() if has_version else None
    except sqlite3.DatabaseError as error:
        raise UserError(f"{path} is not a SQLite database ({error})") from None
    if revision is None:
        raise UserError(f"{path} is not a ProbeLens database (no alembic_version)")
    return revision[0]


def _check_known_revision(path: Path, revision: str) -> None:
    """A backup from newer code would leave a schema this version cannot migrate."""
    scripts = ScriptDirectory(str(MIGRATIONS))
    if revision not in {script.revision for script in scripts.walk_revisions()}:
        raise UserError(f"{path} has schema revision '{revision}', unknown to this version of ProbeLens")


def restore(db_url: str, backup_file: Path) -> None:
    """Replace the SQLite database at `db_url` with `backup_file`. Stop the app first.

    Goes through the backup API (not a file copy) so the live file, its WAL and its
    shared-memory index stay consistent. Migrations run as usual on the next open.
    """
    url = make_url(normalise_url(db_url))
    backup_file = Path(backup_file)
    if url.get_backend_name() != "sqlite":
        raise _unsupported(url, "restore", backup_file)
    target_path = _sqlite_file(url)
    if target_path.exists() and target_path.resolve() == backup_file.resolve():
        raise UserError("the backup file is the database itself")
    _check_known_revision(backup_file, _check_backup_file(backup_file))
    target_path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(_read_only(backup_file), uri=True, timeout=_TIMEOUT_S)) as source:
        _copy(source, target_path)
