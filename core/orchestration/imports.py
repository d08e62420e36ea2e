"""Import files into a dataset: all or nothing, every bad line named, duplicates skipped
(stored by `db.importer.ImportWriter`).

The file is validated completely before anything is written: one bad line means nothing
is imported, and the error lists every bad line so a person can fix the file in one go.
Small files are parsed once and kept; files over `KEEP_PARSED_BYTES` are read a second
time for writing instead of being held in memory as Python objects.

Writing happens inside a savepoint of the caller's transaction, so an error part-way
(another import racing us, a cancel) leaves nothing behind even if the caller carries on.
`import_file` never commits: the caller owns the transaction.

A path typed into the app is passed as `core.text.formats.ServerPath`: it is confined to the import
root and its messages quote no file content (see core/text/formats.py). A plain path is trusted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.base.errors import UserError
from core.base.progress import CancelToken, ProgressFn, check, report
from core.text.formats import RawItem, ServerPath, Source, open_source, redact_values
from core.text.interchange import parse_record, trace_from_record
from core.text.readable import label_both
from core.text.team_notes import parse_notes
from db.annotations import validate_spans
from db.generations import RESERVED_EXTRA_KEYS, check_split, check_storable, clean_dataset_name, content_hash
from db.importer import ImportReport, ImportWriter, ParsedItem, unmatched_of
from db.models import User
from db.users import get_user

__all__ = ["BadImportError", "ImportPreview", "ImportReport", "import_file", "parse_item", "preview_import"]

KEEP_PARSED_BYTES = 32 * 1024 * 1024  # parse once and keep below this; re-read above it
WRITE_CHUNK = 500
PROGRESS_EVERY = 200
_LINE_PREFIX = re.compile(r"^line \d+: ")
# Errors a malformed record can provoke inside parsing helpers; they become "bad line" reports.
_RECORD_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError)


class BadImportError(UserError):
    """Some lines were bad, so nothing was imported; `.problems` lists every one of them."""

    def __init__(self, problems: list[tuple[int, str]], unit: str = "line") -> None:
        self.problems = problems
        self.unit = unit
        count = len(problems)
        first_line, first_reason = problems[0]
        noun = unit if count == 1 else f"{unit}s"
        super().__init__(f"{count} bad {noun}; nothing was imported (first: {unit} {first_line}: {first_reason})")


@dataclass
class ImportPreview:
    """What an import would do, read without touching the database (pages show it first)."""

    filename: str
    format: str
    unit: str
    rows: list[dict[str, Any]]  # the first valid records, summarised
    records: int = 0  # valid records in the file
    duplicates: int = 0  # repeats within the file (the database is not consulted)
    spans: int = 0
    by_index: int = 0
    by_search: int = 0
    unmatched: list[tuple[int, str, str]] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.records > 0


# --- one record ----------------------------------------------------------------------------


def _reason(message: str) -> str:
    """parse_record says "line N: ..."; the line number is kept separately."""
    return _LINE_PREFIX.sub("", message, count=1)


def parse_item(raw: RawItem, default_split: str, *, detail: bool = True) -> ParsedItem:
    """Validate one record as the database will need it; UserError (no position) if bad.
    `detail=False` leaves an unexpected exception's text (which may quote data) out."""
    if raw.problem is not None:
        raise UserError(raw.problem)
    obj = raw.record
    try:
        gen, unmatched, by_index, by_search = parse_record(obj, raw.number)
        split = check_split(obj["split"]) if obj.get("split") is not None else default_split
        trace = trace_from_record(obj)
        gen.extra = {k: v for k, v in gen.extra.items() if k not in RESERVED_EXTRA_KEYS}
        notes = parse_notes(obj)
        gen.spans = validate_spans(gen.completion, gen.spans)
        check_storable(gen, trace)
    except UserError as exc:
        raise UserError(_reason(str(exc))) from None
    except _RECORD_ERRORS as exc:
        shown = f"{type(exc).__name__}: {exc}" if detail else type(exc).__name__
        raise UserError(f"could not read this record ({shown})") from None
    annotated = obj.get("annotations") is not None or obj.get("spans") is not None
    return ParsedItem(
        raw.number, gen, trace, split, annotated, unmatched, by_index, by_search, content_hash(gen.conversation), notes
    )


def _parsed(source: Source, default_split: str) -> Iterator[ParsedItem | tuple[int, str]]:
    """Each record parsed, or (number, reason) for a bad one; a redacted source's reasons quote
    none of the record's texts."""
    for raw in source.items():
        try:
            yield parse_item(raw, default_split, detail=not source.redacted)
        except UserError as exc:
            yield raw.number, redact_values(str(exc), raw.record) if source.redacted else str(exc)


def _summary(item: ParsedItem) -> dict[str, Any]:
    """One preview row: enough to recognise the record and see where its spans landed."""
    text = item.gen.completion
    prompt = next((m["content"] for m in reversed(item.gen.prompt_messages) if m["role"] == "user"), "")
    return {
        "line": item.number,
        "id": item.gen.id,
        "split": item.split,
        "prompt": prompt,
        "completion": text,
        "spans": [
            {"start": s.start, "end": s.end, "label": label_both(s.label), "text": text[s.start : s.end]}
            for s in item.gen.spans
        ],
        "tokens": len(item.trace.token_ids) if item.trace is not None else None,
    }


# --- preview ------------------------------------------------------------------------------------


def preview_import(
    path_or_bytes: str | os.PathLike | bytes | ServerPath,
    filename: str | None = None,
    *,
    limit: int = 20,
    split: str = "train",
) -> ImportPreview:
    """Read the whole file (streaming) and report what an import would find; writes nothing."""
    source = open_source(path_or_bytes, filename)
    default_split = check_split(split)
    preview = ImportPreview(source.name, source.format, source.unit, [])
    seen: set[str] = set()
    for parsed in _parsed(source, default_split):
        if isinstance(parsed, tuple):
            preview.problems.append(parsed)
            continue
        preview.records += 1
        if parsed.digest in seen:
            preview.duplicates += 1
            continue
        seen.add(parsed.digest)
        preview.spans += len(parsed.gen.spans)
        preview.by_index += parsed.by_index
        preview.by_search += parsed.by_search
        preview.unmatched.extend(unmatched_of(parsed))
        if len(preview.rows) < limit:
            preview.rows.append(_summary(parsed))
    if not preview.records and not preview.problems:
        raise UserError(f"{source.name}: no generations found")
    return preview


# --- import --------------------------------------------------------------------------------------


def _validate_all(
    source: Source, default_split: str, keep: bool, progress: ProgressFn | None, cancel: CancelToken | None
) -> tuple[list[ParsedItem], int]:
    """Pass 1: every record checked; raises BadImportError listing all bad ones."""
    problems: list[tuple[int, str]] = []
    kept: list[ParsedItem] = []
    count = 0
    for n, parsed in enumerate(_parsed(source, default_split), start=1):
        if n % PROGRESS_EVERY == 0:
            check(cancel)
            report(progress, "validate", n, 0, f"checked {n} {source.unit}s")  # total unknown while streaming
        if isinstance(parsed, tuple):
            problems.append(parsed)
            kept.clear()  # nothing will be written: stop holding records
            keep = False
            continue
        count += 1
        if keep:
            kept.append(parsed)
    if problems:
        raise BadImportError(problems, source.unit)
    if count == 0:
        raise UserError(f"{source.name}: no generations found")
    return kept, count


def _reread(source: Source, default_split: str) -> Iterator[ParsedItem]:
    """Pass 2 for large files; the file changing in between is an error, not a partial import."""
    for parsed in _parsed(source, default_split):
        if isinstance(parsed, tuple):
            number, reason = parsed
            raise UserError(
                f"{source.name} changed while importing ({source.unit} {number}: {reason}); nothing was imported"
            )
        yield parsed


def _chunks(items: Iterable[ParsedItem], size: int) -> Iterator[list[ParsedItem]]:
    chunk: list[ParsedItem] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def import_file(
    session: Session,
    path: str | os.PathLike | bytes | ServerPath,
    *,
    dataset: str,
    split: str = "train",
    as_user: str | None = None,
    actor: User | None,
    source_name: str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> ImportReport:
    """Import a JSONL / CSV / Parquet file or a `datasets` folder into `dataset` (created if new).

    `split` applies to records without their own. Spans become the gold set (action
    "import"), or `as_user`'s set. Raises BadImportError (nothing written) if any line is
    bad, UserError for an unreadable/empty/oversized file. One "dataset.import" event.
    `path` may be uploaded bytes, with `source_name` giving the file name, or a `ServerPath`
    a person typed (confined to the import root). Does not commit.
    """
    dataset_name = clean_dataset_name(dataset)
    default_split = check_split(split)
    owner = get_user(session, as_user) if as_user is not None else None
    source = open_source(path, source_name)
    keep = source.size <= KEEP_PARSED_BYTES
    kept, count = _validate_all(source, default_split, keep, progress, cancel)
    items = kept if keep else _reread(source, default_split)
    try:
        with session.begin_nested():
            writer = ImportWriter(session, dataset_name, owner, actor, source.name, source.format)
            for chunk in _chunks(items, WRITE_CHUNK):
                check(cancel)
                writer.write(chunk)
                report(
                    progress,
                    "write",
                    writer.report.imported + writer.report.duplicates,
                    count,
                    f"imported {writer.report.imported}",
                )
            writer.log(default_split, as_user)
    except IntegrityError:
        raise UserError(
            f"dataset '{dataset_name}' changed while importing (another import at the same time?); "
            "nothing was imported, try again"
        ) from None
    report(progress, "done", count, count, f"imported {writer.report.imported}")
    return writer.report
