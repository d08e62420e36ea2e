"""Export a dataset: interchange JSONL, Parquet, a `datasets` folder, or CoNLL/BIO.

Which spans go out:
- which="gold": the gold set; which="annotator": the named person's set;
- which="all": gold in `annotations`, plus `"annotations_by": {name: [...]}` for every
  annotator's set.
A record has no `annotations` key when the chosen set does not exist; an empty list means
"annotated, nothing to mark". The importer keeps that difference (it creates a set only
for records that have the key), so import(export(x)) == x.

Every record carries `split` and, when stored, `tokens` (ids, texts, offsets, log-probs,
entropies; per-probe scores are not part of a generation). `index` is always written.

Parquet and `datasets` hold the same flat table, one row per generation, every column
text: id, model, split, conversation, annotations, tokens, extra (JSON object of the
other fields) and, for which="all", annotations_by; JSON columns hold JSON text.
The importer reads that table back as it is.

CoNLL/BIO: one line per token, `token<TAB>tag`; a generation is a sentence that starts
with `# id = ...` comments and ends with a blank line. Tags: Not Supported -> HAL,
Insufficient Information -> UNV, Supported -> SUP (B- first token of a span, I- the rest);
N/A and text outside spans -> O. Tokens are the stored model tokens (their offsets) when
the generation has them, otherwise whitespace-separated words; either way whitespace is
cut out of tokens (a line never holds a space or tab), and whitespace-only and zero-width
(special) tokens are left out. A token takes the tag of the first span it overlaps.
Only one set can be tagged per file, so which="all" is refused for CoNLL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core.base.errors import UserError
from core.base.types import INSUFFICIENT_INFORMATION, NOT_APPLICABLE, NOT_SUPPORTED, SUPPORTED, Span, TokenTrace
from core.base.types import Generation as CoreGeneration
from core.text.interchange import generation_to_record, write_jsonl
from db.annotations import owner_key, spans_of
from db.generations import get_dataset, to_core, trace_of
from db.models import GOLD_OWNER, AnnotationSet, Generation, User
from db.users import get_user

WHICH = ("gold", "annotator", "all")
EXPORT_FORMATS = ("jsonl", "conll", "parquet", "datasets")
BIO_TAGS: dict[str, str | None] = {
    NOT_SUPPORTED: "HAL",
    INSUFFICIENT_INFORMATION: "UNV",
    SUPPORTED: "SUP",
    NOT_APPLICABLE: None,
}
TABLE_COLUMNS = ("id", "model", "split", "conversation", "annotations", "tokens", "extra")
READ_CHUNK = 500
_WORD = re.compile(r"\S+")
_DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


@dataclass
class _Item:
    """One generation with the spans chosen for export."""

    row: Generation
    gen: CoreGeneration  # spans = the main set's (gold or the annotator's)
    trace: TokenTrace | None
    has_set: bool
    others: dict[str, list[Span]]  # annotator name -> spans (which="all" only)


# --- choosing sets ------------------------------------------------------------------------------


def _check_choice(which: str, annotator: str | None) -> None:
    if which not in WHICH:
        raise UserError(f"unknown choice of spans '{which}' (expected one of: {', '.join(WHICH)})")
    if which == "annotator" and not annotator:
        raise UserError("which='annotator' needs the annotator's user name")
    if which != "annotator" and annotator:
        raise UserError(f"an annotator is only used with which='annotator', not which='{which}'")


def _items(session: Session, dataset: str, which: str, annotator: str | None) -> Iterator[_Item]:
    """Generations in id order, read a chunk at a time with their sets (no query per row)."""
    _check_choice(which, annotator)
    ds = get_dataset(session, dataset)
    main_owner = owner_key(get_user(session, annotator)) if which == "annotator" else GOLD_OWNER
    names = {owner_key(u): u.name for u in session.scalars(select(User))} if which == "all" else {}
    ids = list(session.scalars(select(Generation.id).where(Generation.dataset_id == ds.id).order_by(Generation.id)))
    for i in range(0, len(ids), READ_CHUNK):
        chunk = ids[i : i + READ_CHUNK]
        rows = session.scalars(
            select(Generation)
            .where(Generation.id.in_(chunk))
            .order_by(Generation.id)
            .options(selectinload(Generation.model))
        ).all()
        sets_query = select(AnnotationSet).where(AnnotationSet.generation_id.in_(chunk))
        if which != "all":
            sets_query = sets_query.where(AnnotationSet.owner == main_owner)
        by_generation: dict[int, dict[str, AnnotationSet]] = {}
        for found in session.scalars(sets_query.options(selectinload(AnnotationSet.spans))):
            by_generation.setdefault(found.generation_id, {})[found.owner] = found
        for row in rows:
            sets = by_generation.get(row.id, {})
            gen = to_core(row)
            main = sets.get(main_owner)
            gen.spans = spans_of(main) if main is not None else []
            others = {
                names.get(owner, owner): spans_of(found)
                for owner, found in sets.items()
                if which == "all" and owner != GOLD_OWNER
            }
            yield _Item(row, gen, trace_of(row), main is not None, dict(sorted(others.items())))


# --- records ----------------------------------------------------------------------------------------


def _annotations(gen: CoreGeneration, spans: list[Span]) -> list[dict[str, Any]]:
    """Paper-style annotations of `spans` on this completion (index always written)."""
    return generation_to_record(CoreGeneration(gen.conversation, spans))["annotations"]


def _record(item: _Item, which: str) -> dict[str, Any]:
    record = generation_to_record(item.gen, item.trace)
    if not item.has_set:
        del record["annotations"]
    record["split"] = item.row.split
    if which == "all":
        record["annotations_by"] = {name: _annotations(item.gen, spans) for name, spans in item.others.items()}
    return record


def iter_records(
    session: Session, dataset: str, *, which: str = "gold", annotator: str | None = None
) -> Iterator[dict[str, Any]]:
    """Interchange records one at a time (exports of large datasets stream)."""
    for item in _items(session, dataset, which, annotator):
        yield _record(item, which)


def export_records(
    session: Session, dataset: str, *, which: str = "gold", annotator: str | None = None
) -> list[dict[str, Any]]:
    """Interchange records of a dataset, in generation order."""
    return list(iter_records(session, dataset, which=which, annotator=annotator))


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


def _columns(which: str) -> tuple[str, ...]:
    return TABLE_COLUMNS + (("annotations_by",) if which == "all" else ())


def _write_parquet(records: Iterator[dict[str, Any]], out: Path, which: str) -> int:
    """Streamed a chunk at a time through pyarrow; every column is a nullable string."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, pa.string()) for name in _columns(which)])
    count = 0
    with _atomic_file(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        batch: list[dict[str, str | None]] = []
        for record in records:
            batch.append(table_row(record, which))
            if len(batch) == READ_CHUNK:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                count += len(batch)
                batch = []
        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
        count += len(batch)
    return count


def _write_datasets(records: Iterator[dict[str, Any]], out: Path, which: str) -> int:
    import datasets

    columns = _columns(which)
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


class _atomic_file:
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


def conll_sentence(item: _Item) -> str:
    text = item.gen.completion
    units = _units(text, item.trace)
    header = [
        f"# id = {item.gen.id if item.gen.id is not None else item.row.id}",
        f"# generation = {item.row.id}",
        f"# split = {item.row.split}",
        f"# tokens = {'model' if item.trace is not None and item.trace.offsets else 'whitespace'}",
    ]
    lines = [f"{text[s:e]}\t{tag}" for (s, e), tag in zip(units, bio_tags(units, item.gen.spans))]
    return "\n".join(line.replace("\n", " ") for line in header) + "\n" + "".join(f"{line}\n" for line in lines)


def _write_conll(items: Iterator[_Item], out: Path) -> int:
    count = 0
    with _atomic_file(out) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for item in items:
            fh.write(conll_sentence(item))
            fh.write("\n")
            count += 1
    return count


# --- entry point ----------------------------------------------------------------------------------------


def export_file(
    session: Session,
    dataset: str,
    out_path: str | os.PathLike,
    *,
    format: str = "jsonl",
    which: str = "gold",
    annotator: str | None = None,
) -> int:
    """Write `dataset` to `out_path` (replaced atomically); returns the number of generations."""
    if format not in EXPORT_FORMATS:
        raise UserError(f"unknown export format '{format}' (expected one of: {', '.join(EXPORT_FORMATS)})")
    if format == "conll" and which == "all":
        raise UserError("CoNLL tags one annotation set per file: use which='gold' or which='annotator'")
    out = Path(out_path)
    _check_choice(which, annotator)
    get_dataset(session, dataset)  # unknown dataset or annotator: fail before any file is touched
    if annotator:
        get_user(session, annotator)
    if format == "conll":
        return _write_conll(_items(session, dataset, which, annotator), out)
    records = iter_records(session, dataset, which=which, annotator=annotator)
    if format == "parquet":
        return _write_parquet(records, out, which)
    if format == "datasets":
        return _write_datasets(records, out, which)
    if out.is_dir():
        raise UserError(f"{out} is a folder; give a file path")
    counted = _Counter(records)
    write_jsonl(out, counted)
    return counted.count


class _Counter:
    """Counts records as write_jsonl streams them."""

    def __init__(self, records: Iterator[dict[str, Any]]) -> None:
        self.records = records
        self.count = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for record in self.records:
            self.count += 1
            yield record
