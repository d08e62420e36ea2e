"""Reading import files: interchange JSONL, CSV, Parquet and Hugging Face `datasets` folders.

Each format is only turned into interchange-style record dicts here; the importer sends
every record through `core.text.interchange.parse_record`, so NFC, label spellings, span
matching and error wording are the same whatever the file type.

Readers stream: JSONL one line at a time, CSV and Parquet in chunks, `datasets` in
batches from the memory-mapped Arrow files. A source can be read more than once, which
lets the importer validate a large file fully before writing, without keeping it parsed.

Tabular files (CSV, Parquet, `datasets`) hold one generation per row, in either shape:
- `conversation` (JSON text or a list of {role, content}) + optional `annotations`
  (paper style) and/or `spans` (code points), `tokens`, `id`, `model`, `split`;
- `prompt` + `answer` (or `completion`) + the same optional columns.
An `extra` column holding a JSON object is spread into the record (our own exports write
one); any other column is kept as an extra field. Empty cells count as missing.

Paths: a path given as a plain `str`/`Path` is trusted (the CLI, run by an operator with a
shell, and our own code). A path a person typed into the app arrives as a `ServerPath` and
is confined to the import root (`PROBELENS_IMPORT_ROOT`, default `data/imports`): symlinks
and `..` are resolved first, and anything outside gets one message, `OUTSIDE_IMPORT_ROOT`,
whether or not it exists, before anything is read. Such a source is `redacted`: its
messages quote no file content (no header names, no parser details, no cell values).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from core.base import settings
from core.base.errors import UserError
from core.text import dataset_folder

FORMATS = ("jsonl", "csv", "parquet", "datasets")
EXTENSIONS = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
MAX_IMPORT_ENV = "PROBELENS_MAX_IMPORT_MB"
DEFAULT_MAX_IMPORT_MB = 200
CHUNK_ROWS = 1000

# Columns that hold JSON when they are text (a CSV cell can hold nothing else).
JSON_COLUMNS = ("conversation", "annotations", "spans", "tokens", "annotations_by")
# Text columns where an empty cell is a real empty string, not "missing".
_TEXT_COLUMNS = ("prompt", "answer", "completion")
# A DataFrame index saved by accident (to_csv / to_parquet): not data, so not an extra field.
_INDEX_ARTEFACT = re.compile(r"^(Unnamed: \d+|__index_level_\d+__)$")
_BOM = b"\xef\xbb\xbf"
OUTSIDE_IMPORT_ROOT = (
    "only files and folders inside the server's import folder can be imported by path "
    "(set PROBELENS_IMPORT_ROOT to choose that folder)"
)


@dataclass
class RawItem:
    """One line or row before parsing: a decoded record, or why it could not be decoded."""

    number: int  # 1-based line (JSONL) or data row (tabular formats)
    record: Any = None
    problem: str | None = None


@dataclass
class Source:
    """An import file, its detected format and size; `items()` reads it (again) from the start."""

    name: str
    format: str
    size: int
    data: Path | bytes
    redacted: bool = False  # a path typed into the app: messages quote no file content

    @property
    def unit(self) -> str:
        """What a position is called in messages: JSONL has lines, tables have rows."""
        return "line" if self.format == "jsonl" else "row"

    def items(self) -> Iterator[RawItem]:
        readers: dict[str, Callable[[Source], Iterator[RawItem]]] = {
            "jsonl": _jsonl_items,
            "csv": _csv_items,
            "parquet": _parquet_items,
            "datasets": _datasets_items,
        }
        return readers[self.format](self)


@dataclass(frozen=True)
class ServerPath:
    """A path on the server that a person typed into the app: read only inside the import root."""

    typed: str


# --- the import root --------------------------------------------------------------------------


def import_root() -> Path:
    """The one server folder paths typed into the app may point into (symlinks resolved)."""
    return settings.import_root().resolve()


def _outside() -> UserError:
    return UserError(OUTSIDE_IMPORT_ROOT)


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError, ValueError):
        return False


def confine_to_import_root(typed: str | os.PathLike) -> Path:
    """The real path a typed server path names, inside the import root; else one UserError.

    A relative path is taken from the root, an absolute one must lie inside it. Symlinks and
    `..` are resolved before the check, so neither can lead out; for a folder, every link
    inside it is checked too. Whether an outside path exists is never told. Inside the root,
    only regular files and folders are read (never a FIFO or a device).
    """
    text = os.fspath(typed).strip() if isinstance(typed, (str, os.PathLike)) else ""
    if not text or "\x00" in text:
        raise _outside()
    root = import_root()
    try:
        resolved = (root / text).resolve()  # an absolute `text` replaces the root in the join
    except (OSError, RuntimeError, ValueError):
        raise _outside() from None
    if not resolved.is_relative_to(root):
        raise _outside()
    shown = _display_name(text)
    try:
        mode = resolved.stat().st_mode
    except FileNotFoundError:
        raise UserError(f"no such file or folder in the import folder: {shown}") from None
    except OSError:
        raise UserError(f"cannot read {shown} in the import folder") from None
    if stat.S_ISDIR(mode):
        _check_tree(resolved, root)
    elif not stat.S_ISREG(mode):
        raise UserError(f"{shown} is neither a file nor a folder")
    return resolved


def _check_tree(folder: Path, root: Path) -> None:
    """Every entry of a folder (following links, each real folder once) stays inside the root."""
    seen: set[Path] = set()
    pending = [folder]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            entries = list(os.scandir(current))
        except OSError:
            raise UserError("cannot read a folder inside the chosen folder") from None
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink() and not _inside(path, root):
                raise _outside()
            if entry.is_dir():
                pending.append(path.resolve())


# --- size limit and detection ---------------------------------------------------------


def max_import_mb() -> float:
    """The size limit in megabytes: PROBELENS_MAX_IMPORT_MB, default 200."""
    raw = settings.max_import_mb_raw()
    if not raw:
        return float(DEFAULT_MAX_IMPORT_MB)
    try:
        megabytes = float(raw)
    except ValueError:
        megabytes = -1.0
    if not math.isfinite(megabytes) or megabytes <= 0:
        raise UserError(f"{MAX_IMPORT_ENV} must be a positive number of megabytes, not '{raw}'")
    return megabytes


def _human(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB" if size >= 100 * 1024 else f"{size / 1024:.1f} KB"


def _size_of(path: Path, shown: str, root: Path | None) -> int:
    """The bytes an import will read: for a `datasets` folder, the files its metadata names
    (each checked by core.text.dataset_folder), not whatever else the folder holds."""
    if path.is_dir():
        return sum(p.stat().st_size for p in dataset_folder.files_to_read(path, shown, root))
    return path.stat().st_size


def _display_name(name: str) -> str:
    """File names may carry undecodable bytes (surrogate escapes); messages and events may not."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def open_source(path_or_bytes: str | os.PathLike | bytes | ServerPath, filename: str | None = None) -> Source:
    """Detect the format and check the size limit, before anything is read.

    A `ServerPath` is confined to the import root first (see `confine_to_import_root`)."""
    redacted = isinstance(path_or_bytes, ServerPath)
    if isinstance(path_or_bytes, ServerPath):
        typed = path_or_bytes.typed
        path_or_bytes = confine_to_import_root(typed)
        filename = filename or Path(typed.strip()).name or path_or_bytes.name
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        raw = bytes(path_or_bytes)
        data: Path | bytes = raw
        if not filename:
            raise UserError("an uploaded file needs its file name, to tell its format")
        name = _display_name(Path(filename).name)
        size = len(raw)
        is_dir = False
    else:
        path = Path(path_or_bytes)
        if not path.exists():
            raise UserError(f"no such file: {_display_name(str(path))}")
        data = path
        name = _display_name(filename or path.name)
        size = _size_of(path, name, import_root() if redacted else None)
        is_dir = path.is_dir()
    limit_mb = max_import_mb()
    if size > limit_mb * 1024 * 1024:
        raise UserError(
            f"{name} is {_human(size)}, over the import limit of {limit_mb:g} MB (set {MAX_IMPORT_ENV} to raise it)"
        )
    return Source(name, _detect(name, is_dir), size, data, redacted)


def _detect(name: str, is_dir: bool) -> str:
    if is_dir:
        return "datasets"
    suffix = Path(name).suffix.lower()
    if suffix not in EXTENSIONS:
        known = ", ".join(sorted(EXTENSIONS))
        raise UserError(f"{name}: unknown file type '{suffix or '(none)'}' (expected {known}, or a datasets folder)")
    return EXTENSIONS[suffix]


def _binary(source: Source):
    return io.BytesIO(source.data) if isinstance(source.data, bytes) else open(source.data, "rb")


# --- JSONL ------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (write null)")


def decode_json(text: str) -> Any:
    """Strict JSON: NaN/Infinity are refused (no database JSON column can hold them)."""
    return json.loads(text, parse_constant=_reject_constant)


def _json_problem(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON ({exc.msg} at column {exc.colno})"
    if isinstance(exc, RecursionError):
        return "invalid JSON (nested too deeply)"
    return f"invalid JSON ({exc})"


def _jsonl_items(source: Source) -> Iterator[RawItem]:
    """Split on b"\\n" only (like core.text.interchange): U+2028 inside a string is not a line end."""
    with _binary(source) as stream:
        for number, raw in enumerate(stream, start=1):
            if number == 1:
                raw = raw.removeprefix(_BOM)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield RawItem(number, problem=f"not UTF-8 text ({exc.reason} at byte {exc.start})")
                continue
            text = text.removesuffix("\n").removesuffix("\r")
            if not text.strip():
                continue
            try:
                yield RawItem(number, record=decode_json(text))
            except (ValueError, RecursionError) as exc:
                yield RawItem(number, problem=_json_problem(exc))


# --- tabular rows -> records ------------------------------------------------------------------


def plain(value: Any) -> Any:
    """Arrow/pandas/numpy cell values -> plain JSON values; NaN (a missing cell) -> None."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return plain(value.tolist())
    return str(value)


def check_columns(columns: list[str], name: str, *, redacted: bool = False) -> None:
    """A table must say what the conversation is, one way or the other (a redacted message
    counts the columns instead of naming them)."""
    has = set(columns)
    if "conversation" in has or ("prompt" in has and has & {"answer", "completion"}):
        return
    found = f"{len(columns)} other columns" if redacted else ", ".join(columns) or "none"
    raise UserError(
        f"{name}: expected a 'conversation' column, or 'prompt' and 'answer' (or 'completion') columns; found: {found}"
    )


def _detail(source: Source, exc: BaseException) -> str:
    """An exception's text for a message, unless the source is redacted (it may quote content)."""
    return "" if source.redacted else f" ({' '.join(str(exc).split())})"


def redact_values(message: str, record: Any) -> str:
    """`message` with every quoted copy of a text found in `record` (its keys and values, at any
    depth) replaced by '…': row problems of a redacted source keep their reason, not the data."""
    texts: set[str] = set()
    pending = [record]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            texts.add(value)
        elif isinstance(value, dict):
            texts.update(str(k) for k in value)
            pending.extend(value.values())
        elif isinstance(value, (list, tuple)):
            pending.extend(value)
    for text in sorted(texts, key=len, reverse=True):
        for quoted in (repr(text), f'"{text}"', f"'{text}'"):
            message = message.replace(quoted, "'…'")
    return message


def _missing(column: str, value: Any) -> bool:
    return value is None or (value == "" and column not in _TEXT_COLUMNS)


def tabular_record(row: dict[str, Any]) -> dict[str, Any]:
    """One table row -> an interchange record; UserError (no position) for a bad cell."""
    cells = {str(k): plain(v) for k, v in row.items() if not _INDEX_ARTEFACT.match(str(k))}
    cells = {k: v for k, v in cells.items() if not _missing(k, v)}
    for column in JSON_COLUMNS:
        if isinstance(cells.get(column), str):
            try:
                cells[column] = decode_json(cells[column])
            except (ValueError, RecursionError) as exc:
                raise UserError(f"column '{column}': {_json_problem(exc)}") from None
    record: dict[str, Any] = {}
    extra = cells.pop("extra", None)
    if isinstance(extra, str):
        try:
            extra = decode_json(extra) if extra.lstrip().startswith("{") else extra
        except (ValueError, RecursionError):
            pass  # not our JSON object: keep the text as it is
    if isinstance(extra, dict):
        record.update(extra)
    elif extra is not None:
        record["extra"] = extra
    prompt = cells.pop("prompt", None)
    answer = cells.pop("answer", None)
    completion = cells.pop("completion", None)
    if answer is None:
        answer = completion
    elif completion is not None:
        cells["completion"] = completion
    if "conversation" not in cells:
        if prompt is None or answer is None:
            raise UserError("no 'conversation' and no 'prompt' + 'answer' in this row")
        if not isinstance(prompt, str) or not isinstance(answer, str):
            raise UserError("'prompt' and 'answer' must be text")
        cells["conversation"] = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    elif prompt is not None:
        cells["prompt"] = prompt  # a conversation wins; the prompt is kept as an extra field
    record.update(cells)
    return record


def _rows_to_items(rows: Iterator[dict[str, Any]], start: int = 1) -> Iterator[RawItem]:
    for number, row in enumerate(rows, start=start):
        try:
            yield RawItem(number, record=tabular_record(row))
        except UserError as exc:
            yield RawItem(number, problem=str(exc))


# --- CSV ------------------------------------------------------------------------------------


def _csv_items(source: Source) -> Iterator[RawItem]:
    """Every cell as text (ids like "007" stay as written); read in chunks."""
    import pandas as pd

    def rows() -> Iterator[dict[str, Any]]:
        with _binary(source) as stream:
            try:
                reader = pd.read_csv(
                    stream, dtype=str, keep_default_na=False, chunksize=CHUNK_ROWS, encoding="utf-8-sig"
                )
                first = True
                for chunk in reader:
                    if first:
                        check_columns([str(c) for c in chunk.columns], source.name, redacted=source.redacted)
                        first = False
                    yield from chunk.to_dict(orient="records")
            except pd.errors.EmptyDataError:
                return
            except pd.errors.ParserError as exc:
                raise UserError(f"{source.name}: not a valid CSV file{_detail(source, exc)}") from None
            except UnicodeDecodeError as exc:
                raise UserError(f"{source.name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None

    return _rows_to_items(rows())


# --- Parquet ----------------------------------------------------------------------------------


def _parquet_items(source: Source) -> Iterator[RawItem]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def rows() -> Iterator[dict[str, Any]]:
        with _binary(source) as stream:
            try:
                parquet = pq.ParquetFile(stream)
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise UserError(f"{source.name}: not a readable Parquet file{_detail(source, exc)}") from None
            check_columns(list(parquet.schema_arrow.names), source.name, redacted=source.redacted)
            try:
                for batch in parquet.iter_batches(batch_size=CHUNK_ROWS):
                    yield from batch.to_pylist()
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise UserError(f"{source.name}: damaged Parquet file{_detail(source, exc)}") from None

    return _rows_to_items(rows())


# --- Hugging Face datasets folder ---------------------------------------------------------------


def _load_dataset_folder(source: Source):
    if isinstance(source.data, bytes):
        raise UserError("a datasets folder must be given as a path, not uploaded bytes")
    import datasets
    import pyarrow as pa

    try:
        return datasets.load_from_disk(str(source.data))
    except (ValueError, OSError, KeyError, TypeError, RecursionError, pa.ArrowException) as exc:
        raise UserError(
            f"{source.name}: not a folder saved with datasets' save_to_disk{_detail(source, exc)}"
        ) from None


def _datasets_items(source: Source) -> Iterator[RawItem]:
    """A DatasetDict's split names become the rows' split unless a `split` column says otherwise."""
    import datasets

    loaded = _load_dataset_folder(source)
    parts = list(loaded.items()) if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]

    def rows() -> Iterator[dict[str, Any]]:
        for split_name, part in parts:
            check_columns(list(part.column_names), source.name, redacted=source.redacted)
            for batch in part.iter(batch_size=CHUNK_ROWS):
                columns = list(batch)
                for values in zip(*(batch[c] for c in columns)):
                    row = dict(zip(columns, values))
                    if split_name is not None and row.get("split") in (None, ""):
                        row["split"] = split_name
                    yield row

    return _rows_to_items(rows())
