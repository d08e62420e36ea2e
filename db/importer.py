"""Storing an import: validated records become generations and sets, duplicates skipped.

Reading and validating the file (all or nothing, every bad line named) is
`core.orchestration.imports`; this module writes what it validated, a chunk at a time,
inside the caller's transaction, and never commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from core.base.types import Generation as CoreGeneration
from core.base.types import TokenTrace
from core.text.tokens import UnmatchedSpan
from db.annotations import save_annotation_set
from db.events import log_event
from db.generations import build_generation, existing_hashes, get_or_create_dataset, get_or_create_model
from db.models import ModelRecord, User


@dataclass
class ParsedItem:
    """A validated record, ready to be written."""

    number: int
    gen: CoreGeneration  # spans validated, sorted and deduplicated
    trace: TokenTrace | None
    split: str
    annotated: bool  # the record carried annotations/spans (maybe an empty list): store a set
    unmatched: list[UnmatchedSpan]
    by_index: int
    by_search: int
    digest: str


@dataclass
class ImportReport:
    """What an import stored; counts cover imported generations only (not skipped duplicates)."""

    imported: int = 0
    duplicates: int = 0
    spans: int = 0
    by_index: int = 0
    by_search: int = 0
    # Annotations that could not be placed, of imported generations: (line, span text, reason).
    unmatched: list[tuple[int, str, str]] = field(default_factory=list)
    generation_ids: list[int] = field(default_factory=list)
    dataset: str = ""
    format: str = ""
    file: str = ""


def unmatched_of(item: ParsedItem) -> list[tuple[int, str, str]]:
    """(line, span text, reason) of each annotation of `item` that could not be placed."""
    return [(item.number, u.text, u.reason) for u in item.unmatched]


class ImportWriter:
    """Pass 2 of an import: skip duplicates, insert generations a chunk at a time, then their sets.

    The caller validated every item first (`core.orchestration.imports`) and owns the transaction."""

    def __init__(
        self, session: Session, dataset_name: str, owner: User | None, actor: User | None, file: str, format: str
    ) -> None:
        self.session = session
        self.dataset = get_or_create_dataset(session, dataset_name)
        self.owner = owner
        self.actor = actor
        self.detail = f"import of {file}"
        self.seen: set[str] = set()
        self.models: dict[str, ModelRecord] = {}
        self.report = ImportReport(dataset=self.dataset.name, format=format, file=file)

    def _model(self, name: str | None) -> ModelRecord | None:
        if not name:
            return None
        if name not in self.models:
            self.models[name] = get_or_create_model(self.session, name)
        return self.models[name]

    def _new_items(self, chunk: list[ParsedItem]) -> list[ParsedItem]:
        fresh = []
        for item in chunk:
            if item.digest not in self.seen:
                self.seen.add(item.digest)
                fresh.append(item)
        stored = existing_hashes(self.session, self.dataset.id, [item.digest for item in fresh])
        new = [item for item in fresh if item.digest not in stored]
        self.report.duplicates += len(chunk) - len(new)
        return new

    def write(self, chunk: list[ParsedItem]) -> None:
        """Store one chunk of validated items (duplicates, in the file or the dataset, are counted)."""
        new = self._new_items(chunk)
        rows = [
            build_generation(
                self.dataset,
                item.gen,
                split=item.split,
                source="imported",
                trace=item.trace,
                created_by=self.actor,
                model=self._model(item.gen.model),
                digest=item.digest,
            )
            for item in new
        ]
        self.session.add_all(rows)
        self.session.flush()
        for item, row in zip(new, rows):
            if item.annotated:
                save_annotation_set(
                    self.session,
                    row.id,
                    item.gen.spans,
                    owner=self.owner,
                    expected_version=0,
                    actor=self.actor,
                    action="import",
                    detail=self.detail,
                )
            self.report.generation_ids.append(row.id)
            self.report.imported += 1
            self.report.spans += len(item.gen.spans)
            self.report.by_index += item.by_index
            self.report.by_search += item.by_search
            self.report.unmatched.extend(unmatched_of(item))

    def log(self, split: str, as_user: str | None) -> None:
        """The import's one "dataset.import" event."""
        r = self.report
        counts = {
            "imported": r.imported,
            "duplicates": r.duplicates,
            "spans": r.spans,
            "by_index": r.by_index,
            "by_search": r.by_search,
            "unmatched": len(r.unmatched),
        }
        log_event(
            self.session,
            user=self.actor,
            action="dataset.import",
            entity="dataset",
            entity_id=self.dataset.id,
            dataset=self.dataset.name,
            after={"file": r.file, "format": r.format, "split": split, "as_user": as_user, **counts},
            detail=f"imported {r.imported} generations from {r.file} ({r.duplicates} duplicates skipped)",
        )
