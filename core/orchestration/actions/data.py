"""The Data page's actions (admins): import with a preview, export, batch runs, delete a dataset."""

from __future__ import annotations

from pathlib import Path

from core.base.progress import ProgressFn
from core.orchestration import batch, launcher
from core.orchestration.actions.acting import Actor, checker, reading, writing
from core.orchestration.downloads import export_bytes
from core.orchestration.imports import BadImportError as BadImportError
from core.orchestration.imports import ImportPreview, ImportReport, import_file, preview_import
from core.text.formats import ServerPath as ServerPath
from core.text.formats import import_root
from db import Database
from db.generations import delete_dataset as delete_stored_dataset
from db.generations import get_dataset
from db.generations import set_overlap as store_overlap
from db.users import list_users

PAGE = "data"


def server_import_root() -> Path:
    """The one server folder paths typed into the app may point into."""
    return import_root()


def user_names(storage: Database) -> list[str]:
    """Every account's name (an import's annotations may become one person's set)."""
    with storage.sessions() as session:
        return [u.name for u in list_users(session)]


def preview(source: bytes | ServerPath, filename: str | None, split: str) -> ImportPreview:
    """What an import would find (formats, spans found and not found, bad lines); writes nothing."""
    return preview_import(source, filename, split=split)


def import_data(
    storage: Database,
    actor: Actor,
    source: bytes | ServerPath,
    filename: str | None,
    *,
    dataset: str,
    split: str,
    as_user: str | None,
    progress: ProgressFn | None = None,
) -> ImportReport:
    """Import a file or server folder into `dataset` in one transaction; a file with any bad
    line imports nothing (BadImportError lists them)."""
    with writing(storage, actor, PAGE) as (session, me):
        return import_file(
            session,
            source,
            dataset=dataset,
            split=split,
            as_user=as_user,
            actor=me,
            source_name=filename,
            progress=progress,
        )


def export(
    storage: Database, actor: Actor, dataset: str, *, format: str, which: str, annotator: str | None
) -> tuple[bytes, str, str, int]:
    """(content, file name, mime type, answers) of a dataset's export."""
    with reading(storage, actor, PAGE) as (session, _me):
        return export_bytes(session, dataset, format=format, which=which, annotator=annotator)


def delete_dataset(storage: Database, actor: Actor, name: str) -> None:
    """Delete a dataset with everything stored of its answers (logged; cannot be undone)."""
    with writing(storage, actor, PAGE) as (session, me):
        delete_stored_dataset(session, name, me)


def overlap_of(storage: Database, actor: Actor, name: str) -> tuple[int, int]:
    """(k annotators per answer, percent of the answers) the dataset's queue follows (1, 100: none)."""
    with reading(storage, actor, PAGE) as (session, _me):
        dataset = get_dataset(session, name)
        return dataset.overlap_k or 1, dataset.overlap_percent or 100


def set_overlap(storage: Database, actor: Actor, name: str, k: int, percent: int) -> None:
    """Set the dataset's overlap once (admins): the queue keeps an answer in the others' queues
    until it has k annotators, for `percent`% of the answers (a fixed pick by answer id)."""
    with writing(storage, actor, PAGE) as (session, me):
        store_overlap(session, name, k, percent, me)


def start_batch(storage: Database, actor: Actor, params: batch.BatchParams) -> int:
    """Start a batch-generation run; returns its id."""
    return launcher.start_batch(storage, params, checker(actor, PAGE))
