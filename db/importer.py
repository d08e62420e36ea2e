"""Storing an import: validated records become generations and sets, duplicates skipped.

Reading and validating the file (all or nothing, every bad line named) is
`core.orchestration.imports`; this module writes what it validated, a chunk at a time,
inside the caller's transaction, and never commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from core.base.errors import UserError
from core.base.types import Generation as CoreGeneration
from core.base.types import TokenTrace
from core.text.team_notes import TeamNotes
from core.text.tokens import UnmatchedSpan
from db.annotations import save_annotation_set
from db.comments import restore_comment
from db.events import log_event
from db.generations import build_generation, existing_hashes, get_or_create_dataset, get_or_create_model
from db.models import ModelRecord, User
from db.skips import skip
from db.users import get_user


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
    notes: TeamNotes = field(default_factory=TeamNotes)  # comments_by / skips_by of the record


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
    comments: int = 0
    skips: int = 0
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
        self.people: dict[str, User] = {}
        self.report = ImportReport(dataset=self.dataset.name, format=format, file=file)

    def _model(self, name: str | None) -> ModelRecord | None:
        if not name:
            return None
        if name not in self.models:
            self.models[name] = get_or_create_model(self.session, name)
        return self.models[name]

    def _person(self, name: str, number: int) -> User:
        if name not in self.people:
            try:
                self.people[name] = get_user(self.session, name)
            except UserError:
                raise UserError(
                    f"line {number}: the comments or skips name '{name}', who has no account here; "
                    "add the account first (python -m core users add), then import again"
                ) from None
        return self.people[name]

    def _notes(self, item: ParsedItem, generation_id: int) -> None:
        """The record's comments and skips, stored as their authors' (each an event, as in the app)."""
        try:
            for c in item.notes.comments:
                restore_comment(
                    self.session,
                    generation_id,
                    c.body,
                    author=self._person(c.author, item.number),
                    flagged=c.flagged,
                    created_at=c.created_at,
                    resolved_at=c.resolved_at,
                    resolved_by=self._person(c.resolved_by, item.number) if c.resolved_by else None,
                )
            for s in item.notes.skips:
                skip(self.session, generation_id, self._person(s.user, item.number), now=s.skipped_at)
        except UserError as exc:
            text = str(exc)
            raise UserError(text if text.startswith("line ") else f"line {item.number}: {text}") from None
        self.report.comments += len(item.notes.comments)
        self.report.skips += len(item.notes.skips)

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
            self._notes(item, row.id)
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
            "comments": r.comments,
            "skips": r.skips,
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
