"""The ORM against a migrated database: shared by the schema and migration tests."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from db.models import Base
from db.search_index import is_search_object


def _not_search_index(_object, name, _type, _reflected, _compare_to) -> bool:
    """The passages' full-text index is built by migration 0007 per database, outside the ORM."""
    return not is_search_object(name)


def schema_differences(connection) -> list:
    """What autogenerate would change to make the database match the ORM (empty: they agree)."""
    opts = {"compare_type": True, "include_object": _not_search_index}
    return compare_metadata(MigrationContext.configure(connection, opts=opts), Base.metadata)
