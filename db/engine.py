"""Engine and sessions: SQLite by default (WAL, busy timeout, foreign keys), any URL via DATABASE_URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransactionOrigin, sessionmaker

from core.base import settings

SQLITE_BUSY_TIMEOUT_MS = 15_000


def default_url() -> str:
    return settings.database_url()


def normalise_url(url: str) -> str:
    """PostgreSQL goes through psycopg 3 whatever driver the URL names."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


READ_ONLY = "probelens_read_only"  # execution option of the engine that reading transactions use
READ_BIND = "probelens_read_bind"  # where a session keeps that engine


def _sqlite_begin(conn) -> None:
    # A writing transaction takes the write lock at BEGIN: a reader that later writes would
    # otherwise fail with "database is locked" instead of waiting its turn under the busy
    # timeout. A read-only one begins DEFERRED: under WAL it never waits for a writer and never
    # makes a writer wait, so page runs keep reading while someone holds the write lock.
    read_only = conn.get_execution_options().get(READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_engine(url: str | None = None) -> Engine:
    url = normalise_url(url or default_url())
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={
                "check_same_thread": False,
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                "isolation_level": None,
            },
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=60)


class StoreSession(Session):
    """A session whose transactions say what they are for: one opened with `session.begin()`
    writes (BEGIN IMMEDIATE on SQLite: it waits its turn for the write lock); one begun
    implicitly by a first query only reads (a deferred BEGIN: under WAL it neither waits for a
    writer nor makes one wait), and a flush of changes in it is refused. So a page run that only
    looks is never stalled by a writer, however slow."""

    def get_bind(self, *args: Any, **kwargs: Any) -> Any:
        bind = super().get_bind(*args, **kwargs)
        transaction = self.get_transaction()
        reading = transaction is None or transaction.origin is SessionTransactionOrigin.AUTOBEGIN
        return self.info.get(READ_BIND, bind) if reading and isinstance(bind, Engine) else bind


def _reading(session: Session) -> bool:
    transaction = session.get_transaction()
    return transaction is not None and transaction.origin is SessionTransactionOrigin.AUTOBEGIN


def _refuse_implicit_writes(session: Session, _context: Any, _instances: Any) -> None:
    if _reading(session):
        raise RuntimeError("writes need an explicit transaction: `with session.begin(): ...`")


def _refuse_implicit_statements(state: ORMExecuteState) -> None:
    if (state.is_insert or state.is_update or state.is_delete) and _reading(state.session):
        raise RuntimeError("writes need an explicit transaction: `with session.begin(): ...`")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = sessionmaker(
        engine,
        class_=StoreSession,
        expire_on_commit=False,
        info={READ_BIND: engine.execution_options(**{READ_ONLY: True})},
    )
    event.listen(factory, "before_flush", _refuse_implicit_writes)
    event.listen(factory, "do_orm_execute", _refuse_implicit_statements)
    return factory


def rows_matched(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched. `Session.execute` is typed to return a `Result`,
    but for such a statement it is a `CursorResult`, which carries the count."""
    return cast(CursorResult[Any], result).rowcount


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session
