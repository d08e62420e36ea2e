"""Export file formats: the flat table of Parquet and `datasets` folders, CoNLL/BIO, atomic writes.

What goes into each record (which sets, which fields) is read from storage by `db.exporter`;
this module only lays records out in files. The formats themselves are described there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.base.errors import UserError
from core.base.types import (
    INSUFFICIENT_INFORMATION,
    NOT_APPLICABLE,
    NOT_SUPPORTED,
    SUPPORTED,
    Generation,
    Span,
    TokenTrace,
)

BIO_TAGS: dict[str, str | None] = {
    NOT_SUPPORTED: "HAL",
    INSUFFICIENT_INFORMATION: "UNV",
    SUPPORTED: "SUP",
    NOT_APPLICABLE: None,
}
TABLE_COLUMNS = ("id", "model", "split", "conversation", "annotations", "tokens", "extra")
WRITE_CHUNK = 500  # rows per Parquet batch
_WORD = re.compile(r"\S+")
_DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


# --- tables (Parquet, datasets) -------------------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def table_row(record: dict[str, Any], which: str) -> dict[str, str | None]:
    """A record as a flat row of text columns (see the module docstring)."""
    special = {"id", "model", "split", "conversation", "annotations", "tokens", "annotations_by"}
    row: dict[str, str | None] = {
        "id": record.get("id"),
        "model": record.get("model"),
        "split": record["split"],
        "conversation": _json(record["conversation"]),
        "annotations": _json(record["annotations"]) if "annotations" in record else None,
        "tokens": _json(record["tokens"]) if "tokens" in record else None,
        "extra": _json({k: v for k, v in record.items() if k not in special}),
    }
    if which == "all":
        row["annotations_by"] = _json(record["annotations_by"])
    return row


def table_columns(which: str) -> tuple[str, ...]:
    return TABLE_COLUMNS + (("annotations_by",) if which == "all" else ())


def write_parquet(records: Iterator[dict[str, Any]], out: Path, which: str) -> int:
    """Streamed a chunk at a time through pyarrow; every column is a nullable string."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, pa.string()) for name in table_columns(which)])
    count = 0
    with atomic_file(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        batch: list[dict[str, str | None]] = []
        for record in records:
            batch.append(table_row(record, which))
            if len(batch) == WRITE_CHUNK:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                count += len(batch)
                batch = []
        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
        count += len(batch)
    return count


def write_datasets(records: Iterator[dict[str, Any]], out: Path, which: str) -> int:
    import datasets

    columns = table_columns(which)
    rows = [table_row(record, which) for record in records]
    features = datasets.Features({name: datasets.Value("string") for name in columns})
    table = (
        datasets.Dataset.from_list(rows, features=features)
        if rows
        else datasets.Dataset.from_dict({name: [] for name in columns}, features=features)
    )
    _check_replaceable_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _quietly_save(table, tmp)
        _swap_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(rows)


def _quietly_save(table, folder: Path) -> None:
    """save_to_disk draws a progress bar on stderr; the CLI promises stderr for messages only."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        table.save_to_disk(str(folder))
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _check_replaceable_folder(out: Path) -> None:
    """Only an earlier datasets export (or an empty folder) may be replaced: never a random folder."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"{out} exists and is not a folder; choose another output path")
    if any(out.iterdir()) and not any((out / marker).exists() for marker in _DATASET_MARKERS):
        raise UserError(f"{out} is a folder that does not hold a saved dataset; refusing to overwrite it")


def _swap_folder(new: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, out)


class atomic_file:
    """Write to a temporary file beside `out`, rename over it only when everything worked."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def __enter__(self) -> str:
        if self.out.is_dir():
            raise UserError(f"{self.out} is a folder; give a file path")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.out.name}.", suffix=".tmp", dir=self.out.parent)
        os.close(fd)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.chmod(self.tmp, 0o644)
            os.replace(self.tmp, self.out)
        else:
            Path(self.tmp).unlink(missing_ok=True)


# --- CoNLL / BIO --------------------------------------------------------------------------------------


def _units(text: str, trace: TokenTrace | None) -> list[tuple[int, int]]:
    """Character ranges of the CoNLL tokens: model tokens split at whitespace, or plain words."""
    if trace is None or not trace.offsets:
        return [m.span() for m in _WORD.finditer(text)]
    units: list[tuple[int, int]] = []
    covered = 0
    for start, end in trace.offsets:
        start = max(start, covered)  # byte pieces of one character share offsets: emit it once
        if start >= end:
            continue
        units.extend(m.span() for m in _WORD.finditer(text, start, end))
        covered = max(covered, end)
    return units


def bio_tags(units: list[tuple[int, int]], spans: list[Span]) -> list[str]:
    """B-/I- tags by the first span each unit overlaps; a new span always starts with B-."""
    tagged = [s for s in spans if BIO_TAGS.get(s.label)]
    tags: list[str] = []
    previous: int | None = None
    for start, end in units:
        hit = next((i for i, s in enumerate(tagged) if s.start < end and start < s.end), None)
        if hit is None:
            tags.append("O")
        else:
            prefix = "I" if hit == previous else "B"
            tags.append(f"{prefix}-{BIO_TAGS[tagged[hit].label]}")
        previous = hit
    return tags


def conll_sentence(gen: Generation, trace: TokenTrace | None, generation_id: int, split: str) -> str:
    """One generation as a CoNLL sentence: `# ...` comment lines, then `token<TAB>tag` lines."""
    text = gen.completion
    units = _units(text, trace)
    header = [
        f"# id = {gen.id if gen.id is not None else generation_id}",
        f"# generation = {generation_id}",
        f"# split = {split}",
        f"# tokens = {'model' if trace is not None and trace.offsets else 'whitespace'}",
    ]
    lines = [f"{text[s:e]}\t{tag}" for (s, e), tag in zip(units, bio_tags(units, gen.spans))]
    return "\n".join(line.replace("\n", " ") for line in header) + "\n" + "".join(f"{line}\n" for line in lines)


def write_conll(sentences: Iterator[str], out: Path) -> int:
    """CoNLL sentences (`conll_sentence`), each followed by a blank line; returns how many."""
    count = 0
    with atomic_file(out) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for sentence in sentences:
            fh.write(sentence)
            fh.write("\n")
            count += 1
    return count


class RecordCounter:
    """Counts records as write_jsonl streams them."""

    def __init__(self, records: Iterator[dict[str, Any]]) -> None:
        self.records = records
        self.count = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for record in self.records:
            self.count += 1
            yield record
