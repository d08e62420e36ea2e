"""A stored probe version as a local folder: the cache by content hash, rewritten from the database
when missing or when any file's hash differs, so any host with the database loads any version."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.orm import Session

from core.probes.version_files import cached_folder, materialise
from db.probe_files import version_file_hashes, version_files


def version_dir(session: Session, version: int, root: str | os.PathLike | None = None) -> Path:
    """The intact local folder of `version`'s files (under `root`, default the probes folder).

    Raises UserError for an unknown version or one whose files are not in the database."""
    found = cached_folder(version_file_hashes(session, version), root)
    return found if found is not None else materialise(version_files(session, version), root)


def database_version_dir(database, version: int, root: str | os.PathLike | None = None) -> Path:
    """`version_dir` in a session of its own."""
    with database.sessions() as session:
        return version_dir(session, version, root)
