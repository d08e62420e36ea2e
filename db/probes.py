"""Probe versions: register a trained probe (its files stored in the database), choose the active one."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.base.errors import UserError
from core.probes.config import ProbeConfig, is_probe_dir
from core.probes.version_files import read_version_files
from db.events import log_event
from db.generations import get_or_create_model
from db.models import Probe, User
from db.probe_files import store_version_files


def next_version(session: Session) -> int:
    return int(session.scalar(select(func.coalesce(func.max(Probe.version), 0))) or 0) + 1


def register_probe(
    session: Session,
    *,
    artifact_dir: str,
    config: ProbeConfig,
    version: int | None = None,
    parent_version: int | None = None,
    created_by: User | None = None,
    activate: bool = False,
    files: Mapping[str, bytes] | None = None,
) -> Probe:
    """A new version row with its files ({relative name: bytes}) in the caller's transaction.

    Without `files`, those of the probe folder `artifact_dir` are stored when it holds one
    (a folder registered by hand); a row without files cannot be loaded."""
    if files is None and is_probe_dir(artifact_dir):
        files = read_version_files(artifact_dir)
    model = get_or_create_model(
        session, config.model_id, tokenizer_hash=config.tokenizer_hash, hidden_size=config.hidden_size
    )
    probe = Probe(
        version=version if version is not None else next_version(session),
        model_id=model.id,
        layer=config.layer,
        artifact_path=str(artifact_dir),
        metrics=config.metrics,
        parent_version=parent_version,
        training_data_hash=config.training_data_hash,
        created_by=created_by.id if created_by else None,
    )
    session.add(probe)
    session.flush()
    if files is not None:
        store_version_files(session, probe, files)
    log_event(
        session,
        user=created_by,
        action="probe.register",
        entity="probe",
        entity_id=probe.id,
        after={
            "version": probe.version,
            "layer": probe.layer,
            "path": probe.artifact_path,
            "content_hash": probe.content_hash,
        },
    )
    if activate:
        set_active(session, probe.version, created_by)
    return probe


def get_probe(session: Session, version: int) -> Probe:
    probe = session.scalar(select(Probe).where(Probe.version == version))
    if probe is None:
        raise UserError(f"unknown probe version {version}")
    return probe


def find_probe(session: Session, version: int) -> Probe | None:
    """Probe `version`, or None when there is no such version."""
    return session.scalar(select(Probe).where(Probe.version == version))


def any_probe(session: Session) -> bool:
    """Whether any probe version was ever registered."""
    return session.scalar(select(Probe.id).limit(1)) is not None


def probe_version_of(session: Session, probe_id: int) -> int:
    """The version number of the probe row `probe_id` (runs record the row id)."""
    probe = session.get(Probe, probe_id)
    if probe is None:
        raise UserError(f"unknown probe {probe_id}")
    return probe.version


def active_probe(session: Session) -> Probe | None:
    return session.scalar(select(Probe).where(Probe.active.is_(True)))


def list_probes(session: Session) -> list[Probe]:
    return list(session.scalars(select(Probe).order_by(Probe.version.desc())))


def set_active(session: Session, version: int, actor: User | None) -> Probe:
    probe = get_probe(session, version)
    before = active_probe(session)
    session.execute(update(Probe).where(Probe.active.is_(True)).values(active=False))
    probe.active = True
    session.flush()
    log_event(
        session,
        user=actor,
        action="probe.activate",
        entity="probe",
        entity_id=probe.id,
        before={"version": before.version if before else None},
        after={"version": version},
    )
    return probe
