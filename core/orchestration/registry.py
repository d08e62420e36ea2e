"""Probe versions: register (one atomic path for every source), load, promote, roll back, upload.

Registration writes the probe's files under a staging name, stores them in the database with
the row in one transaction and copies them into the local cache folder named by their content
hash; if that transaction fails nothing is stored and a cache folder it created is removed, so a
killed process never leaves a half-registered version. Loading reads the files from the
database (through that cache, checked by hash): the row's artifact_path is informational.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from core.base import settings
from core.base.errors import ModelMismatchError, UserError
from core.base.numbers import finite_or_none
from core.orchestration.launcher import launch
from core.orchestration.probe_cache import database_version_dir, version_dir
from core.orchestration.run_params import RescoreParams
from core.probes.archive import unpack_probe
from core.probes.config import ADAPTER_DIR, ProbeConfig
from core.probes.files import load_probe, save_probe
from core.probes.linear import LinearProbe
from core.probes.lora import lora_hidden
from core.probes.lora_pipeline import load_lora_probe, lora_item_scores
from core.probes.paper import is_paper_zip, paper_lora_settings, read_paper_probe
from core.probes.pipeline import item_scores
from core.probes.stored_metrics import headline_auc, number, section, whole
from core.probes.version_files import cache_folder, file_hashes, materialise, read_version_files
from db.events import list_events
from db.models import Probe, RunKind
from db.probes import (
    active_probe,
    get_probe,
    list_probes,
    next_version,
    register_probe,
    set_active,
)
from db.users import user_by_id


@dataclass
class LoadedProbe:
    """A stored probe version, loaded and checked against the model it will read."""

    version: int
    probe: LinearProbe  # the head (a LoRA probe's too)
    config: ProbeConfig
    layer: int
    model: Any | None = None  # a LoRA probe's adapted copy of the model; None for a linear probe

    @property
    def kind(self) -> str:
        return self.config.kind

    def hidden(self, lm, conversation, token_ids=None):
        """Block `layer`'s states of an answer as this probe reads them (adapters on for LoRA) [T, H]."""
        if self.model is not None:
            return lora_hidden(lm, self.model, conversation, self.layer, token_ids)
        from core.engine.scoring import score_conversation

        return score_conversation(lm, conversation, [self.layer], token_ids).hidden[self.layer]


@dataclass
class Registered:
    version: int
    probe_id: int


def probes_dir() -> Path:
    return settings.probes_dir()


def load_version(database, lm, version: int | None = None) -> LoadedProbe | None:
    """The active probe (or `version`) for `lm`; None when no probe is active.

    Raises UserError (ModelMismatchError among them) when the files are not in the database,
    damaged or were trained on another model: each caller decides whether that is an error or
    "unscored". The files come from the database, through the local cache folder.
    """
    with database.sessions() as session:
        record = get_probe(session, version) if version is not None else active_probe(session)
        if record is None:
            return None
        version = record.version
        path = version_dir(session, version)
    probe, config = load_probe(
        path, expect_model_id=lm.model_id, expect_tokenizer_hash=lm.tokenizer_hash, expect_hidden_size=lm.hidden_size
    )
    if config.kind == "lora":
        model, probe, config = _adapted(lm, path)
        return LoadedProbe(version, probe, config, lm.check_layer(config.layer), model)
    return LoadedProbe(version, probe, config, lm.check_layer(config.layer))


def scored_items(lm, loaded: LoadedProbe, prepared: list) -> list:
    """ItemScores of prepared answers under this version: the adapted model's states for a LoRA
    probe, the cached base states for a linear one (baselines always from the base model)."""
    if loaded.model is not None:
        return lora_item_scores(lm, loaded.model, loaded.probe, prepared, loaded.layer)
    return item_scores(prepared, loaded.probe, loaded.layer)


_ADAPTED: dict[tuple[int, str], tuple] = {}  # (model, cache folder, i.e. content) -> (adapted model, head, config)
_ADAPTED_KEPT = 2  # each is a copy of the model: keep few


def _adapted(lm, path: str | Path) -> tuple:
    """A LoRA version's adapted model, loaded once per process (a deep copy costs memory and ~1 s)."""
    key = (id(lm), str(path))
    if key not in _ADAPTED:
        while len(_ADAPTED) >= _ADAPTED_KEPT:
            _ADAPTED.pop(next(iter(_ADAPTED)))
        _ADAPTED[key] = load_lora_probe(lm, path)
    return _ADAPTED[key]


def load_version_or_none(database, lm, version: int | None = None) -> LoadedProbe | None:
    """`load_version`, with a probe that does not fit `lm` read as "no probe" (answers stay unscored)."""
    try:
        return load_version(database, lm, version)
    except UserError:
        return None


WriteFiles = Callable[[Path, int], ProbeConfig]
InTransaction = Callable[[Session, Probe], None]


def register_version(
    database,
    write: WriteFiles,
    *,
    created_by: int | None = None,
    activate: bool = False,
    parent_version: int | None = None,
    in_transaction: InTransaction | None = None,
    tag: str = "probe",
) -> Registered:
    """Write a probe's files with `write(staging_dir, version)` and register them as version N.

    The files (head, config, a LoRA probe's adapter files) are stored in the database in the
    registering transaction and copied into the cache folder named by their content hash.
    `in_transaction(session, row)` runs inside that transaction (finish the run row, store
    the demo's answers): if it raises, nothing is registered and no new folder stays.
    """
    root = probes_dir()
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".staging-{tag}-{os.getpid()}-{time.time_ns()}"
    target: Path | None = None
    try:
        with database.sessions() as session, session.begin():
            version = next_version(session)
            config = write(staging, version)
            files = read_version_files(staging)
            fresh = not cache_folder(file_hashes(files), root).exists()  # else shared with identical files
            folder = materialise(files, root)
            target = folder if fresh else None
            actor = user_by_id(session, created_by)
            row = register_probe(
                session,
                artifact_dir=str(folder),
                config=config,
                version=version,
                parent_version=parent_version,
                created_by=actor,
                activate=activate,
                files=files,
            )
            if in_transaction is not None:
                in_transaction(session, row)
            registered = Registered(version, row.id)
    except BaseException:
        if target is not None and target.exists():
            shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return registered


def upload_probe(database, lm, data: bytes, actor_id: int | None) -> int:
    """Register an uploaded probe zip as a new (inactive) version; checked against `lm` first.

    The zip, its config and its weights are untrusted (`unpack_probe`); of its metrics only
    the sections that validate are kept, plus the version number it had where it came from."""

    def write(staging: Path, _version: int) -> ProbeConfig:
        _probe, config = unpack_probe(
            data,
            staging,
            expect_model_id=lm.model_id,
            expect_tokenizer_hash=lm.tokenizer_hash,
            expect_hidden_size=lm.hidden_size,
        )
        lm.check_layer(config.layer)
        if config.kind == "lora":
            load_lora_probe(lm, staging)  # the adapters must load onto this model, or nothing is registered
        config.metrics = {
            **config.metrics,
            "uploaded_as_version_of": config.version,
            **({"kind": "lora"} if config.kind == "lora" else {}),
        }
        return config

    return register_version(database, write, created_by=actor_id, tag="upload").version


def import_paper_probe(database, lm, source: str | Path | bytes, actor_id: int | None) -> int:
    """Register a probe written by the paper's code (a folder or a zip) as a new inactive version.

    Its files name no model, only a hidden size and a layer: both are checked against the
    loaded model, and the version is recorded as `source: paper` for this model."""
    paper, files = read_paper_probe(source)
    lora = paper_lora_settings(files) if paper.has_adapter else None
    if paper.hidden_size != lm.hidden_size:
        raise ModelMismatchError(
            f"paper probe: it reads vectors of size {paper.hidden_size} but model "
            f"'{lm.model_id}' has hidden size {lm.hidden_size}"
        )
    layer = lm.check_layer(paper.layer)

    def write(staging: Path, version: int) -> ProbeConfig:
        config = ProbeConfig(
            model_id=lm.model_id,
            tokenizer_hash=lm.tokenizer_hash,
            layer=layer,
            hidden_size=lm.hidden_size,
            version=version,
            source="paper",
            train_config={"source": "paper", "target_layer_name": paper.target_layer_name},
            kind="lora" if lora else "linear",
            lora=lora or {},
            metrics={"kind": "lora" if lora else "linear"},
        )
        save_probe(staging, paper.probe, config)
        if lora is not None:
            (staging / ADAPTER_DIR).mkdir()
            for name in ("adapter_config.json", "adapter_model.safetensors"):
                (staging / ADAPTER_DIR / name).write_bytes(files[name])
            load_lora_probe(lm, staging)  # the adapters must load onto this model, or nothing is registered
        return config

    return register_version(database, write, created_by=actor_id, tag="paper").version


def upload_any(database, lm, data: bytes, actor_id: int | None) -> int:
    """An uploaded zip: the paper's format when it holds probe_head.bin, else ours."""
    if is_paper_zip(data):
        return import_paper_probe(database, lm, data, actor_id)
    return upload_probe(database, lm, data, actor_id)


def promote(database, version: int, actor_id: int | None) -> None:
    """Make `version` the active probe now (its files are checked first)."""
    with database.sessions() as session, session.begin():
        load_probe(version_dir(session, version))  # refuse a version whose files are gone or damaged
        set_active(session, version, user_by_id(session, actor_id))


def promote_and_rescore(database, version: int, actor_id: int | None, model: str | None = None) -> int:
    """Promote and start the re-score that fills the heatmaps; returns the re-score run.

    The run is started first: if it is refused (a re-score is already running) nothing
    changed, and the person gets that one message.
    """
    load_probe(database_version_dir(database, version))
    run_id = launch(database, RunKind.RESCORE, RescoreParams(version, model).to_dict(), actor_id)
    promote(database, version, actor_id)
    return run_id


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


def versions_table(database) -> list[dict[str, Any]]:
    """One row per probe version, newest first: what a person compares before promoting.

    Stored metrics are read tolerantly: a missing or odd value is a blank cell."""
    rows = []
    with database.sessions() as session:
        for p in list_probes(session):
            m = p.metrics
            comparison = section(m, "comparison")
            delta = section(comparison, "span_max", "auc")
            ci = delta.get("ci") if isinstance(delta.get("ci"), list) else []
            rows.append(
                {
                    "version": p.version,
                    "active": p.active,
                    "created": p.created_at.strftime("%Y-%m-%d %H:%M") if p.created_at else "",
                    "kind": section(m).get("kind") if section(m).get("kind") in ("linear", "lora") else "linear",
                    "layer": p.layer,
                    "train answers": whole(section(m).get("n_train")),
                    "validation answers": whole(section(m).get("n_validation")),
                    "token AUC": number(m, "token", "auc"),
                    "span_max AUC": headline_auc(m),
                    "recall@10%FPR": number(m, "span_max", "recall_at_fpr_0.1"),
                    "vs": whole(comparison.get("against")),
                    "Δ span_max AUC": finite_or_none(delta.get("delta")),
                    "Δ CI low": finite_or_none(ci[0]) if len(ci) > 0 else None,
                    "Δ CI high": finite_or_none(ci[1]) if len(ci) > 1 else None,
                    "data hash": (p.training_data_hash or "")[:12],
                    "parent": p.parent_version,
                }
            )
    return rows


def comparison_rows(metrics: Any) -> list[dict[str, Any]]:
    """The paired comparison stored with a version, flat: level x metric with delta and CI."""
    comparison = section(metrics, "comparison")
    rows = []
    for level in ("token", "span_max"):
        for metric in ("auc", "recall_at_fpr_0.1"):
            row = section(comparison, level, metric)
            if not row:
                continue
            ci = row.get("ci") if isinstance(row.get("ci"), list) and len(row.get("ci")) == 2 else [None, None]
            rows.append(
                {
                    "level": level,
                    "metric": metric,
                    "active": finite_or_none(row.get("a")),
                    "new": finite_or_none(row.get("b")),
                    "delta": finite_or_none(row.get("delta")),
                    "CI low": finite_or_none(ci[0]),
                    "CI high": finite_or_none(ci[1]),
                    "P(new better)": finite_or_none(row.get("prob_b_better")),
                }
            )
    return rows
