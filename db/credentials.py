"""Database credentials for Ray tasks: a task carries the URL without its password.

Ray task and actor arguments can be read by anyone who can list the cluster's tasks (the
dashboard, `ray list tasks`), so the password must not travel in them. The worker takes it from
its own environment instead: the `DATABASE_URL` of its `ray start` when that names the same
database, else the driver's own sources (PostgreSQL's `PGPASSWORD` or `~/.pgpass`).
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from core.base import settings
from core.base.errors import UserError


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        raise UserError("DATABASE_URL is not a database URL") from None


def without_password(url: str) -> str:
    """`url` with its password removed (user, host, port and database kept)."""
    u = _parse(url)  # URL.set ignores None, so the URL is made anew without the password
    bare = URL.create(u.drivername, username=u.username, host=u.host, port=u.port, database=u.database, query=u.query)
    return bare.render_as_string(hide_password=False)


def _same_database(a: URL, b: URL) -> bool:
    return (a.get_backend_name(), a.username, a.host, a.port, a.database) == (
        b.get_backend_name(),
        b.username,
        b.host,
        b.port,
        b.database,
    )


def with_local_password(url: str) -> str:
    """On a worker: the task's `url` with the password from this machine's `DATABASE_URL` when
    that names the same database (backend, user, host, port, name); else `url` unchanged."""
    task = _parse(url)
    if task.password is not None:
        return url
    local_text = settings.database_url_if_set()
    if not local_text:
        return url
    try:
        local = make_url(local_text)
    except ArgumentError:
        return url
    if local.password is None or not _same_database(task, local):
        return url
    return task.set(password=local.password).render_as_string(hide_password=False)
