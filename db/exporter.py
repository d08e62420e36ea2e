"""Export a dataset: interchange JSONL, Parquet, a `datasets` folder, or CoNLL/BIO (the file
layouts are `core.text.export_formats`; this module reads what goes into them).

Which spans go out:
- which="gold": the gold set; which="annotator": the named person's set;
- which="all": gold in `annotations`, plus `"annotations_by": {name: [...]}` for every
  annotator's set, and the team's notes: `comments_by` and `skips_by`
  (`core.text.team_notes`), which the importer reads back.
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

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core.base.errors import UserError
from core.base.types import Generation as CoreGeneration
from core.base.types import Span, TokenTrace
from core.text.export_formats import RecordCounter, conll_sentence, write_conll, write_datasets, write_parquet
from core.text.interchange import generation_to_record, write_jsonl
from core.text.team_notes import NoteComment, NoteSkip, notes_fields
from db.annotations import owner_key, spans_of
from db.comments import comments_by_answer
from db.generations import get_dataset, to_core, trace_of
from db.models import GOLD_OWNER, AnnotationSet, Generation, User
from db.skips import skips_by_answer
from db.users import get_user

WHICH = ("gold", "annotator", "all")
EXPORT_FORMATS = ("jsonl", "conll", "parquet", "datasets")
READ_CHUNK = 500


@dataclass
class _Item:
    """One generation with the spans chosen for export."""

    row: Generation
    gen: CoreGeneration  # spans = the main set's (gold or the annotator's)
    trace: TokenTrace | None
    has_set: bool
    others: dict[str, list[Span]]  # annotator name -> spans (which="all" only)
    notes: dict[str, Any] | None = None  # comments_by and skips_by (which="all" only)


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
    if which == "annotator":
        assert annotator is not None, "_check_choice requires the annotator's name for this choice"
        main_owner = owner_key(get_user(session, annotator))
    else:
        main_owner = GOLD_OWNER
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
        comments = comments_by_answer(session, list(chunk)) if which == "all" else {}
        skips = skips_by_answer(session, list(chunk)) if which == "all" else {}
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
            notes = (
                notes_fields(
                    [
                        NoteComment(c.author or "", c.body, c.flagged, c.created_at, c.resolved_at, c.resolved_by)
                        for c in comments.get(row.id, [])
                    ],
                    [NoteSkip(s.user, s.skipped_at) for s in skips.get(row.id, [])],
                )
                if which == "all"
                else None
            )
            yield _Item(row, gen, trace_of(row), main is not None, dict(sorted(others.items())), notes)


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
        record.update(item.notes or {})
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
        sentences = (
            conll_sentence(i.gen, i.trace, i.row.id, i.row.split) for i in _items(session, dataset, which, annotator)
        )
        return write_conll(sentences, out)
    records = iter_records(session, dataset, which=which, annotator=annotator)
    if format == "parquet":
        return write_parquet(records, out, which)
    if format == "datasets":
        return write_datasets(records, out, which)
    if out.is_dir():
        raise UserError(f"{out} is a folder; give a file path")
    counted = RecordCounter(records)
    write_jsonl(out, counted)
    return counted.count
