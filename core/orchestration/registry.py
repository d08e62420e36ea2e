"""Probe versions: register (one atomic path for every source), load, promote, roll back, upload.

Registration writes the probe's files under a staging name, stores them in the database with
the row in one transaction and copies them into the local cache folder named by their content
hash; if that transaction fails nothing is stored and a cache folder it created is removed, so a
killed process never leaves a half-registered version. Loading reads the files from the
database (through that cache, checked by hash): the row's artifact_path is informational.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from sqlalchemy.orm import Session

from core.base import settings
from core.base.errors import ModelMismatchError, UserError
from core.base.numbers import finite_or_none
from core.orchestration.acting_as import ActingAs, acting_as
from core.orchestration.probe_cache import version_dir
from core.probes.adapter_schema import ADAPTER_CONFIG, check_adapter_config
from core.probes.archive import unpack_probe
from core.probes.config import ADAPTER_DIR, ProbeConfig
from core.probes.files import load_probe, save_probe
from core.probes.kinds import KINDS, LINEAR, LORA, LoadedProbe, check_finite_scores, kind_of, load_probe_dir
from core.probes.paper import is_paper_zip, paper_lora_settings, read_paper_probe, require_safetensors_adapter
from core.probes.stored_metrics import headline_auc, number, section, whole
from core.probes.version_files import cache_folder, file_hashes, materialise, read_version_files
from db.events import list_events
from db.models import Probe, User
from db.probes import (
    active_probe,
    get_probe,
    list_probes,
    next_version,
    register_probe,
    set_active,
)


@dataclass
class Registered:
    probe_version: int
    probe_id: int


def probes_dir() -> Path:
    return settings.probes_dir()


@overload
def load_version(database, lm, probe_version: int) -> LoadedProbe: ...
@overload
def load_version(database, lm, probe_version: None = None) -> LoadedProbe | None: ...
def load_version(database, lm, probe_version: int | None = None) -> LoadedProbe | None:
    """The active probe (or version `probe_version`) for `lm`; None when no probe is active
    (a version that is not there is a UserError, never None).

    Raises UserError (ModelMismatchError among them) when the files are not in the database,
    damaged or were trained on another model: each caller decides whether that is an error or
    "unscored". The files come from the database, through the local cache folder.
    """
    with database.sessions() as session:
        record = get_probe(session, probe_version) if probe_version is not None else active_probe(session)
        if record is None:
            return None
        probe_version = record.version
        path = version_dir(session, probe_version)
    probe = _loaded(lm, path)
    return dataclasses.replace(probe, probe_version=probe_version)


_LOADED: dict[tuple[int, str], LoadedProbe] = {}  # (model, cache folder, i.e. content) -> the loaded probe
_LOADED_KEPT = 2  # a kind that prepares a model (LoRA) holds a copy of it: keep few


def _loaded(lm, path: str | Path) -> LoadedProbe:
    """A version's files loaded for `lm`, prepared once per process for kinds that prepare a model
    (a LoRA probe's merged copy costs memory and ~1 s); other kinds load afresh (cheap, always checked)."""
    key = (id(lm), str(path))
    if key in _LOADED:
        return _LOADED[key]
    probe = load_probe_dir(lm, path)
    if probe.model is not None:
        while len(_LOADED) >= _LOADED_KEPT:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = probe
    return probe


def load_version_or_none(database, lm, probe_version: int | None = None) -> LoadedProbe | None:
    """`load_version`, with a probe that does not fit `lm` read as "no probe" (answers stay unscored)."""
    try:
        return load_version(database, lm, probe_version)
    except UserError:
        return None


WriteFiles = Callable[[Path, int], ProbeConfig]
InTransaction = Callable[[Session, Probe], None]


def register_version(
    database,
    write: WriteFiles,
    *,
    created_by: int | None | ActingAs = None,
    activate: bool = False,
    parent_version: int | None = None,
    in_transaction: InTransaction | None = None,
    tag: str = "probe",
) -> Registered:
    """Write a probe's files with `write(staging_dir, probe_version)` and register them as version N.

    The files (head, config, a LoRA probe's adapter files) are stored in the database in the
    registering transaction and copied into the cache folder named by their content hash.
    `in_transaction(session, row)` runs inside that transaction (finish the run row, store
    the demo's answers): if it raises, nothing is registered and no new folder stays.
    `created_by` is checked first in that transaction (an action's checker, or an account id).
    """
    root = probes_dir()
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".staging-{tag}-{os.getpid()}-{time.time_ns()}"
    target: Path | None = None
    try:
        with database.sessions() as session, session.begin():
            actor = acting_as(created_by, session)
            probe_version = next_version(session)
            config = write(staging, probe_version)
            files = read_version_files(staging)
            fresh = not cache_folder(file_hashes(files), root).exists()  # else shared with identical files
            folder = materialise(files, root)
            target = folder if fresh else None
            row = register_probe(
                session,
                artifact_dir=str(folder),
                config=config,
                version=probe_version,
                parent_version=parent_version,
                created_by=actor,
                activate=activate,
                files=files,
            )
            if in_transaction is not None:
                in_transaction(session, row)
            registered = Registered(probe_version, row.id)
    except BaseException:
        if target is not None and target.exists():
            shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return registered


def _admitted(lm, directory: Path, head, config: ProbeConfig, where: str) -> None:
    """The untrusted files in `directory` as the server will load them: the kind's own checks
    (LoRA: the strict adapter schema and a trial load in a child process), then the probe
    loaded and its scores of a fixed answer checked finite. Runs before any transaction opens."""
    layer = lm.check_layer(config.layer)
    model = kind_of(config.kind).admit(lm, directory, head, config, where)
    check_finite_scores(lm, LoadedProbe(None, head, config, layer, model), where)


def upload_probe(database, lm, data: bytes, actor_id: int | None | ActingAs) -> int:
    """Register an uploaded probe zip as a new (inactive) version; checked against `lm` first.

    The zip, its config and its weights are untrusted (`unpack_probe`); of its metrics only
    the sections that validate are kept, plus the version number it had where it came from.
    Every check (a LoRA probe's trial load among them) runs on a private temporary copy before
    the registering transaction, so a slow or hostile file holds no database lock."""
    with tempfile.TemporaryDirectory(prefix="probelens-upload-") as scratch:
        checked = Path(scratch) / "probe"
        head, config = unpack_probe(
            data,
            checked,
            expect_model_id=lm.model_id,
            expect_tokenizer_hash=lm.tokenizer_hash,
            expect_hidden_size=lm.hidden_size,
        )
        _admitted(lm, checked, head, config, "uploaded probe")
        kind = kind_of(config.kind)
        config.metrics = {
            **config.metrics,
            "uploaded_as_version_of": config.version,
            **({"kind": kind.name} if kind is not LINEAR else {}),  # the versions table's default is linear
        }

        def write(staging: Path, _version: int) -> ProbeConfig:
            shutil.copytree(checked, staging)
            return config

        return register_version(database, write, created_by=actor_id, tag="upload").probe_version


def import_paper_probe(database, lm, source: str | Path | bytes, actor_id: int | None | ActingAs) -> int:
    """Register a probe written by the paper's code (a folder or a zip) as a new inactive version.

    Its files name no model, only a hidden size and a layer: both are checked against the
    loaded model, and the version is recorded as `source: paper` for this model. Its adapter,
    if any, goes through the same checks as an uploaded LoRA probe's, before any transaction."""
    where = "paper probe"
    paper, files = read_paper_probe(source)
    if paper.hidden_size != lm.hidden_size:
        raise ModelMismatchError(
            f"paper probe: it reads vectors of size {paper.hidden_size} but model "
            f"'{lm.model_id}' has hidden size {lm.hidden_size}"
        )
    layer = lm.check_layer(paper.resolved_layer(lm.num_layers))  # layer_idx -1: stored as the last block's number
    if paper.has_adapter:
        require_safetensors_adapter(files)
    kind = LORA if paper.has_adapter else LINEAR  # the paper's probes: a head, with or without its adapters

    def config_for(probe_version: int, lora: dict[str, Any]) -> ProbeConfig:
        return ProbeConfig(
            model_id=lm.model_id,
            tokenizer_hash=lm.tokenizer_hash,
            layer=layer,
            hidden_size=lm.hidden_size,
            version=probe_version,
            source="paper",
            train_config={
                "source": "paper",
                "target_layer_name": paper.target_layer_name,
                "layer_idx": paper.layer,  # as the paper's file said (-1: the last block, stored as `layer`)
            },
            kind=kind.name,
            lora=lora,
            metrics={"kind": kind.name},
        )

    lora: dict[str, Any] = {}
    if paper.has_adapter:  # the schema alone here, for the settings; `_admitted` runs every check
        checked_config = check_adapter_config(files[ADAPTER_CONFIG], lm.model, lm.num_layers, layer, where)
        lora = paper_lora_settings(checked_config.settings)
    with tempfile.TemporaryDirectory(prefix="probelens-paper-") as scratch:
        checked = Path(scratch) / "probe"
        save_probe(checked, paper.probe, config_for(0, lora))
        if paper.has_adapter:
            (checked / ADAPTER_DIR).mkdir()
            for name in kind.extra_files:
                (checked / ADAPTER_DIR / name).write_bytes(files[name])
        _admitted(lm, checked, paper.probe, config_for(0, lora), where)  # the adapter config is now canonical

        def write(staging: Path, probe_version: int) -> ProbeConfig:
            config = config_for(probe_version, lora)
            save_probe(staging, paper.probe, config)
            if paper.has_adapter:
                shutil.copytree(checked / ADAPTER_DIR, staging / ADAPTER_DIR)
            return config

        return register_version(database, write, created_by=actor_id, tag="paper").probe_version


def upload_any(database, lm, data: bytes, actor_id: int | None | ActingAs) -> int:
    """An uploaded zip: the paper's format when it holds probe_head.bin, else ours."""
    if is_paper_zip(data):
        return import_paper_probe(database, lm, data, actor_id)
    return upload_probe(database, lm, data, actor_id)


def activate_in(session: Session, probe_version: int, actor: User | None) -> None:
    """Make `probe_version` the active probe in the caller's transaction (its files checked first)."""
    load_probe(version_dir(session, probe_version))  # refuse a version whose files are gone or damaged
    set_active(session, probe_version, actor)


def promote(database, probe_version: int, actor: int | None | ActingAs) -> None:
    """Make `probe_version` the active probe now, with the actor checked in the same transaction."""
    with database.sessions() as session, session.begin():
        activate_in(session, probe_version, acting_as(actor, session))


def rollback_target(database) -> int | None:
    """The version that was active before the current one (the event log knows)."""
    with database.sessions() as session:
        current = active_probe(session)
        if current is None:
            return None
        events = list_events(session, action="probe.activate", limit=None)
        for event in events:
            before = (event.before or {}).get("version")
            after = (event.after or {}).get("version")
            if after == current.version and before and before != current.version:
                existing = {p.version for p in list_probes(session)}
                if before in existing:
                    return int(before)
        return current.parent_version


# --- views for the Probes page and the CLI ----------------------------------------------------


#: Every Δ reads new − reference; the header says which is which.
DELTA_COLUMN = "Δ span_max AUC (this − vs)"
DELTA_HELP = "this version's span_max AUC minus that of the version in 'vs' (active when it was trained), same answers"


def versions_table(database) -> list[dict[str, Any]]:
    """One row per probe version, newest first: what a person compares before promoting.

    Stored metrics are read tolerantly: a missing or odd value is a blank cell."""
    rows = []
    with database.sessions() as session:
        for p in list_probes(session):
            m = p.metrics
            comparison = section(m, "comparison")
            delta = section(comparison, "span_max", "auc")
            raw_ci = delta.get("ci")
            ci = raw_ci if isinstance(raw_ci, list) else []
            rows.append(
                {
                    "version": p.version,
                    "active": p.active,
                    "created": p.created_at.strftime("%Y-%m-%d %H:%M") if p.created_at else "",
                    "kind": section(m).get("kind") if section(m).get("kind") in KINDS else LINEAR.name,
                    "layer": p.layer,
                    "train answers": whole(section(m).get("n_train")),
                    "validation answers": whole(section(m).get("n_validation")),
                    "token AUC": number(m, "token", "auc"),
                    "span_max AUC": headline_auc(m),
                    "recall@10%FPR": number(m, "span_max", "recall_at_fpr_0.1"),
                    "vs": whole(comparison.get("against")),
                    DELTA_COLUMN: finite_or_none(delta.get("delta")),
                    "Δ CI low": finite_or_none(ci[0]) if len(ci) > 0 else None,
                    "Δ CI high": finite_or_none(ci[1]) if len(ci) > 1 else None,
                    "data hash": (p.training_data_hash or "")[:12],
                    "parent": p.parent_version,
                }
            )
    return rows


def kind_choices() -> dict[str, str]:
    """Every probe kind a retrain can train, with its one-line description (the Probes page's chooser)."""
    return {name: kind.description for name, kind in KINDS.items()}


def adapts_model(kind: str) -> bool:
    """Whether a probe kind trains a model of its own (LoRA: its rank, blocks and KL weight are asked for)."""
    return KINDS.get(kind, LINEAR).adapts_model


def reads_own_model(database, probe_version: int) -> str | None:
    """The noun of a version's kind ("LoRA probe") when that kind reads a model of its own, else None
    (the Inspect page's layer sweep measures the base model's states only)."""
    kind = next((row["kind"] for row in versions_table(database) if row["version"] == probe_version), LINEAR.name)
    implementation = KINDS.get(kind, LINEAR)
    return implementation.noun if implementation.adapts_model else None


def comparison_rows(metrics: Any) -> list[dict[str, Any]]:
    """The paired comparison stored with a version, flat: level x metric with delta and CI."""
    comparison = section(metrics, "comparison")
    rows = []
    for level in ("token", "span_max"):
        for metric in ("auc", "recall_at_fpr_0.1"):
            row = section(comparison, level, metric)
            if not row:
                continue
            raw_ci = row.get("ci")
            ci = raw_ci if isinstance(raw_ci, list) and len(raw_ci) == 2 else [None, None]
            rows.append(
                {
                    "level": level,
                    "metric": metric,
                    "active": finite_or_none(row.get("a")),
                    "new": finite_or_none(row.get("b")),
                    "Δ (new − active)": finite_or_none(row.get("delta")),
                    "CI low": finite_or_none(ci[0]),
                    "CI high": finite_or_none(ci[1]),
                    "P(new better)": finite_or_none(row.get("prob_b_better")),
                }
            )
    return rows
