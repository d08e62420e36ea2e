"""Reads more than one page makes: datasets, probe versions, the sidebar's probe line, links."""

from __future__ import annotations

from typing import Any

from core.base.types import TokenTrace
from core.orchestration.colour_status import no_colour_reason
from core.probes.stored_metrics import headline_auc
from db import Database, comments, open_database
from db.generations import find_generation, get_generation, list_datasets
from db.probes import active_probe as find_active
from db.probes import list_probes

MAX_LINK_DIGITS = 12


def open_storage() -> Database:
    """The database, migrated to the newest schema (the app opens it once per process)."""
    return open_database()


def datasets(storage: Database) -> list[dict[str, Any]]:
    """Every dataset with its counts (db.generations.list_datasets)."""
    with storage.sessions() as session:
        return list_datasets(session)


def dataset_names(storage: Database) -> list[str]:
    return [d["name"] for d in datasets(storage)]


def probe_versions(storage: Database) -> list[int]:
    """Versions of every registered probe, newest first."""
    with storage.sessions() as session:
        return [p.version for p in list_probes(session)]


def probe_records(storage: Database) -> list[tuple[int, bool, int]]:
    """(version, active, layer) of every registered probe, newest first."""
    with storage.sessions() as session:
        return [(p.version, p.active, p.layer) for p in list_probes(session)]


def open_flag_count(storage: Database) -> int:
    """How many flags annotators raised that nobody resolved yet (every dataset)."""
    with storage.sessions() as session:
        return comments.open_flag_count(session)


def active_probe_summary(storage: Database) -> str:
    with storage.sessions() as session:
        record = find_active(session)
        if record is None:
            return "Active probe: none yet"
        auc = headline_auc(record.metrics)
        auc_text = f", span AUC {auc:.2f}" if isinstance(auc, (int, float)) else ""
        return f"Active probe: v{record.version} (layer {record.layer}{auc_text})"


def linked_answer(storage: Database, raw: str | None) -> int | None:
    """The stored answer a `?generation=N` link names, or None (links are typed by anyone)."""
    if not raw or not (raw.isdecimal() and len(raw) <= MAX_LINK_DIGITS):
        return None
    with storage.sessions() as session:
        return int(raw) if find_generation(session, int(raw)) is not None else None


def answer_dataset(storage: Database, generation_id: int) -> str:
    """The dataset an answer belongs to (UserError if there is no such answer)."""
    with storage.sessions() as session:
        return get_generation(session, generation_id).dataset.name


def colour_reason(storage: Database, scoring_version: int | None, generation_id: int | None = None) -> str | None:
    """None when tokens can be coloured; else the sentence saying why not (core.orchestration.colour_status)."""
    with storage.sessions() as session:
        return no_colour_reason(session, scoring_version=scoring_version, generation_id=generation_id)


def trace_or_tokenise(storage: Database, lm, generation_id: int, trace: TokenTrace | None) -> TokenTrace:
    """An answer imported without tokens is tokenised (and stored) once, when first opened."""
    from core.orchestration.rescore import tokenise_answer

    return trace if trace is not None else tokenise_answer(storage, lm, generation_id)
