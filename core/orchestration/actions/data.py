"""The Data page's actions (admins): import with a preview, export, batch runs, delete a dataset,
and the LLM judge: judges, their instructions, reference documents, label runs."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from core.base.errors import UserError
from core.base.progress import ProgressFn
from core.orchestration import batch, launcher
from core.orchestration.actions.acting import Actor, checker, reading, writing
from core.orchestration.downloads import export_bytes
from core.orchestration.imports import BadImportError as BadImportError
from core.orchestration.imports import ImportPreview, ImportReport, import_file, preview_import
from core.orchestration.label_run import LabelParams as LabelParams
from core.text.filenames import file_slug
from core.text.formats import ServerPath as ServerPath
from core.text.formats import import_root, max_import_mb
from core.text.references import parse_reference_text, read_references
from db import Database, judges, references
from db.generations import delete_dataset as delete_stored_dataset
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


def start_batch(storage: Database, actor: Actor, params: batch.BatchParams) -> int:
    """Start a batch-generation run; returns its id."""
    return launcher.start_batch(storage, params, checker(actor, PAGE))


# --- the LLM judge (issue #24): judges, instructions, references, label runs ---------------------


def judge_overview(storage: Database, actor: Actor) -> dict[str, Any]:
    """What the judge tab shows: the judges (never a key: only the variable's name), the newest
    instructions, and the reference collections."""
    with reading(storage, actor, PAGE) as (session, _me):
        current = judges.current_instructions(session)
        return {
            "judges": [asdict(j) for j in judges.list_judges(session)],
            "instructions": {"version": current.version, "body": current.body, "author": current.author},
            "collections": references.list_collections(session),
        }


def add_judge(storage: Database, actor: Actor, name: str, **settings: Any) -> judges.JudgeConfig:
    """A new judge and its model account; one message and nothing written on bad settings."""
    with writing(storage, actor, PAGE) as (session, me):
        return judges.add_judge(session, name, actor=me, **settings)


def remove_judge(storage: Database, actor: Actor, name: str) -> None:
    with writing(storage, actor, PAGE) as (session, me):
        judges.remove_judge(session, name, actor=me)


def save_judge_instructions(storage: Database, actor: Actor, body: str) -> int:
    """A new version of the judge's instructions; returns its number."""
    with writing(storage, actor, PAGE) as (session, me):
        return judges.save_instructions(session, body, actor=me).version


def import_references(
    storage: Database, actor: Actor, source: bytes | ServerPath, filename: str | None, collection: str
) -> dict[str, Any]:
    """Reference documents from an upload or a path in the import root (read and checked before
    the transaction: a bad file stores nothing)."""
    if isinstance(source, ServerPath):
        docs = read_references(source)
    else:
        if len(source) > max_import_mb() * 1024 * 1024:
            raise UserError(f"the file is larger than the import limit of {max_import_mb():g} MB")
        try:
            text = source.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{filename or 'the file'}: not UTF-8 text") from None
        docs = parse_reference_text(text, file_slug(filename or "upload.txt"))
    with writing(storage, actor, PAGE) as (session, me):
        return references.import_documents(session, docs, collection=collection, actor=me)


def start_label(storage: Database, actor: Actor, params: LabelParams) -> int:
    """Start a label run (the judge pre-annotates a dataset); returns its id."""
    return launcher.start_label(storage, params, checker(actor, PAGE))
