"""A probe version's files in the database: the source of truth, so any host with the
database can load any version (its local probes folder is only a cache by content hash)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.base.errors import UserError
from core.probes.version_files import check_names, content_hash, file_hashes, file_sha256
from db.models import Probe, ProbeFile


def store_version_files(session: Session, probe: Probe, files: Mapping[str, bytes]) -> str:
    """Store `files` ({relative name: bytes}) as `probe`'s, in the caller's transaction; its content hash."""
    check_names(files)
    if session.scalar(select(ProbeFile.id).where(ProbeFile.probe_id == probe.id).limit(1)) is not None:
        raise UserError(f"probe version {probe.version} already has its files stored")
    hashes = file_hashes(files)
    for name in sorted(files):
        session.add(
            ProbeFile(
                probe_id=probe.id, name=name, sha256=hashes[name], size=len(files[name]), content=bytes(files[name])
            )
        )
    probe.content_hash = content_hash(hashes)
    session.flush()
    return probe.content_hash


def version_file_hashes(session: Session, version: int) -> dict[str, str]:
    """{name: sha256} of a version's files, without reading their bytes (enough to check a cache)."""
    rows = session.execute(
        select(ProbeFile.name, ProbeFile.sha256)
        .join(Probe, Probe.id == ProbeFile.probe_id)
        .where(Probe.version == version)
    ).all()
    if not rows:
        raise _no_files(session, version)
    return {name: sha for name, sha in rows}


def version_files(session: Session, version: int) -> dict[str, bytes]:
    """{name: bytes} of a version's files, each checked against its stored sha256."""
    rows = session.execute(
        select(ProbeFile.name, ProbeFile.sha256, ProbeFile.content)
        .join(Probe, Probe.id == ProbeFile.probe_id)
        .where(Probe.version == version)
    ).all()
    if not rows:
        raise _no_files(session, version)
    files = {}
    for name, sha, content in rows:
        data = bytes(content)
        if file_sha256(data) != sha:
            raise UserError(f"probe version {version}: the stored {name} is damaged (its hash does not match)")
        files[name] = data
    check_names(files)
    return files


def _no_files(session: Session, version: int) -> UserError:
    if session.scalar(select(Probe.id).where(Probe.version == version)) is None:
        return UserError(f"unknown probe version {version}")
    return UserError(
        f"probe version {version} has no files in the database (its folder was missing when "
        "the database was migrated); upload it again"
    )
