"""The Probes page's actions (admins): retrain, promote / roll back, download, upload."""

from __future__ import annotations

from typing import Any

from core.orchestration import launcher, registry, retrain
from core.orchestration.actions.acting import Actor, checker, writing
from db import Database
from db.probes import get_probe

PAGE = "probes"


def start_retrain(storage: Database, actor: Actor, params: retrain.RetrainParams) -> int:
    """Start a retrain run on the team's labels; returns its id."""
    return launcher.start_retrain(storage, params, checker(actor, PAGE))


def activate(storage: Database, actor: Actor, version: int) -> int:
    """Promote (or roll back to) `version` and start the re-score that fills its heatmaps;
    returns the re-score's run id."""
    return launcher.promote_and_rescore(storage, version, checker(actor, PAGE))


def upload(storage: Database, lm, actor: Actor, data: bytes) -> int:
    """Register an uploaded probe zip (ours or the paper's) as a new, inactive version. The
    actor is checked before the (slow) checks of the files and again inside the registering
    transaction, so a revoked sign-in gets its refusal at once and can never register."""
    with writing(storage, actor, PAGE):
        pass
    return registry.upload_any(storage, lm, data, checker(actor, PAGE))


def stored_metrics(storage: Database, version: int) -> Any:
    """A version's metrics as stored (read them tolerantly: core.probes.stored_metrics)."""
    with storage.sessions() as session:
        return get_probe(session, version).metrics


def download(storage: Database, version: int) -> bytes:
    """A version's files as one zip (config.json, probe.safetensors, adapter files)."""
    from core.orchestration.probe_cache import database_version_dir
    from core.probes.archive import pack_probe

    return pack_probe(database_version_dir(storage, version))
