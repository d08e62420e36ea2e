"""Storage: SQLAlchemy models, engine/session, repository functions, Alembic migrations."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from db.engine import default_url, make_engine, session_factory


@dataclass
class Database:
    """An engine plus its session factory; migrated to the newest schema when opened."""

    engine: Engine
    sessions: sessionmaker[Session]

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads only (see `db.engine.StoreSession`): it never takes the write
        lock, so a slow writer does not stall everyone who only looks; ended by a rollback."""
        with self.sessions() as session:
            try:
                yield session
            finally:
                session.rollback()

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def full_url(self) -> str:
        """The URL with its password: what a worker process or a Ray task is handed to connect."""
        return self.engine.url.render_as_string(hide_password=False)

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(url: str | None = None, *, migrate: bool = True) -> Database:
    from db.migrate import upgrade

    engine = make_engine(url or default_url())
    if migrate:
        upgrade(engine)
    return Database(engine, session_factory(engine))
