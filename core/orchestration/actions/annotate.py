"""The Annotate page's actions: its queue, the open answer, save, skip, comments, guidelines."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.base.errors import UserError
from core.base.types import Generation, Span, TokenTrace
from core.orchestration import work_queue
from core.orchestration.actions.acting import Actor, reading, writing
from core.orchestration.colour_status import no_colour_reason
from core.text.tokens import nfc
from db import Database, assignments, comments, guidelines, skips
from db.annotations import ConflictError, get_set, save_annotation_set, spans_of
from db.generations import get_generation, to_core, trace_of
from db.judges import judged_spans
from db.predictions import scores_for
from db.references import passages_by_id

PAGE = "annotate"
MAX_SEARCH_CHARS = work_queue.MAX_SEARCH_CHARS
MAX_COMMENT_CHARS = comments.MAX_COMMENT_CHARS
MAX_GUIDELINE_CHARS = guidelines.MAX_GUIDELINE_CHARS
REVIEW_ROLES = comments.REVIEW_ROLES
Comment = comments.Comment
Guidelines = guidelines.Guidelines


@dataclass(frozen=True)
class QueueView:
    """What the queue shows: its items (with why each is there), my progress and the counts line."""

    items: list[work_queue.QueueItem]
    reasons: dict[int, str]
    flagged: set[int]
    progress: dict[str, int]
    needs_second: int
    summary: str
    error: str | None = None


def open_queue(
    storage: Database,
    actor: Actor,
    *,
    dataset: str | None,
    split: str | None,
    label_state: str | None,
    sort: str,
    probe_version: int | None,
    search: str | None,
    limit: int = 300,
) -> QueueView:
    """The actor's queue with the page's filters; a bad filter (e.g. a too-long search) is
    reported in `error` with an empty list, the counts still shown."""
    with reading(storage, actor, PAGE) as (session, me):
        error = None
        try:
            items = work_queue.queue(
                session,
                me,
                dataset=dataset,
                split=split,
                label_state=label_state,
                sort=sort,
                probe_version=probe_version,
                limit=limit,
                search=search,
            )
        except UserError as exc:
            error, items = str(exc), []
        progress = work_queue.progress(session, me, dataset=dataset)
        standing = work_queue.counts(session, me, dataset=dataset, split=split)
        flagged = comments.flagged_ids(session, [item.generation_id for item in items])
    return QueueView(
        items=items,
        reasons={i.generation_id: work_queue.reason(i) for i in items},
        flagged=flagged,
        progress=progress,
        needs_second=standing.needs_second,
        summary=work_queue.summary_line(standing),
        error=error,
    )


@dataclass(frozen=True)
class OpenAnswer:
    """One answer as the editor opens it: the actor's own spans and the version they start from."""

    generation: Generation
    trace: TokenTrace | None
    where: str
    my_spans: list[Span]
    version: int
    scores: list[float] | None
    no_colours: str | None
    # the LLM judges' spans as editor suggestions: {start, end, score, label, note, source}
    judge_suggestions: list[dict[str, Any]] = field(default_factory=list)


PASSAGE_CHARS_SHOWN = 300


def _judge_suggestions(session, generation_id: int, length: int) -> list[dict[str, Any]]:
    """Each judge's newest spans on the answer, with its note and the passages it cited (their
    text, cut short) as the suggestion's note: the editor shows them as text in the tooltip."""
    out: list[dict[str, Any]] = []
    for judge, spans in judged_spans(session, generation_id):
        cited = {p.id: p for p in passages_by_id(session, [i for s in spans for i in s.get("evidence") or []])}
        for span in spans:
            start, end = int(span["start"]), int(span["end"])
            if not 0 <= start < end <= length:
                continue  # the answer changed since: never guess
            lines = [span.get("note") or ""]
            for pid in span.get("evidence") or []:
                if pid in cited:
                    text = cited[pid].text
                    cut = text[:PASSAGE_CHARS_SHOWN] + ("…" if len(text) > PASSAGE_CHARS_SHOWN else "")
                    lines.append(f"[passage {pid}] {cited[pid].title}: {cut}")
            note = "\n".join(line for line in lines if line) or None
            out.append(
                {"start": start, "end": end, "score": 1.0, "label": span["label"], "note": note, "source": judge}
            )
    return out


def open_answer(storage: Database, actor: Actor, generation_id: int, probe_version: int | None) -> OpenAnswer:
    with reading(storage, actor, PAGE) as (session, me):
        row = get_generation(session, generation_id)
        my_set = get_set(session, generation_id, me)
        return OpenAnswer(
            judge_suggestions=_judge_suggestions(session, generation_id, len(nfc(row.completion))),
            generation=to_core(row),
            trace=trace_of(row),
            where=f"{row.dataset.name} / {row.split}",
            my_spans=spans_of(my_set) if my_set else [],
            version=my_set.version if my_set else 0,
            scores=scores_for(session, probe_version, generation_id) if probe_version else None,
            no_colours=no_colour_reason(session, scoring_version=probe_version, generation_id=generation_id),
        )


@dataclass(frozen=True)
class Saved:
    version: int


@dataclass(frozen=True)
class Conflict:
    """Someone saved after the actor loaded: what is stored now (nothing of the actor's was written)."""

    their_spans: list[Span]
    their_version: int
    saved_by: str | None


def save_annotation(
    storage: Database, actor: Actor, generation_id: int, spans: list[Span], base_version: int
) -> Saved | Conflict:
    """Store the actor's set over `base_version` and mark their assignment done; a stale base is a
    Conflict, never an overwrite. Other refusals raise UserError."""
    try:
        with writing(storage, actor, PAGE) as (session, me):
            stored = save_annotation_set(
                session, generation_id, spans, owner=me, expected_version=base_version, actor=me
            )
            assignments.mark_done(session, generation_id, me)
            return Saved(stored.version)
    except ConflictError as exc:
        return Conflict(list(exc.current_spans), exc.current_version, exc.saved_by)


def skip(storage: Database, actor: Actor, generation_id: int) -> None:
    """Pass on an answer: it leaves the actor's queue and is not assigned to them again."""
    with writing(storage, actor, PAGE) as (session, me):
        skips.skip(session, generation_id, me)


def unskip(storage: Database, actor: Actor, generation_id: int) -> None:
    with writing(storage, actor, PAGE) as (session, me):
        skips.unskip(session, generation_id, me)


def skipped_at(storage: Database, actor: Actor, generation_id: int) -> datetime | None:
    with reading(storage, actor, PAGE) as (session, me):
        return skips.skipped_at(session, generation_id, me)


def add_comment(storage: Database, actor: Actor, generation_id: int, body: str, *, flag: bool) -> None:
    with writing(storage, actor, PAGE) as (session, me):
        comments.add_comment(session, generation_id, body, author=me, flag=flag)


def resolve_flags(storage: Database, actor: Actor, generation_id: int) -> int:
    """Close the answer's open flags; returns how many were closed."""
    with writing(storage, actor, PAGE) as (session, me):
        return comments.resolve_flags(session, generation_id, actor=me)


def comments_for(storage: Database, generation_id: int) -> list[Comment]:
    with storage.sessions() as session:
        return comments.comments_for(session, generation_id)


def open_flags(storage: Database, dataset: str | None) -> list[Comment]:
    """Answers annotators flagged for review, with their comments (newest first)."""
    with storage.sessions() as session:
        return comments.open_flags(session, dataset)


def current_guidelines(storage: Database) -> Guidelines | None:
    with storage.sessions() as session:
        return guidelines.current(session)


def save_guidelines(storage: Database, actor: Actor, body: str, expected_version: int) -> int:
    """A new guidelines version (admins only: db.guidelines refuses others); returns its number."""
    with writing(storage, actor, PAGE) as (session, me):
        return guidelines.save(session, body, actor=me, expected_version=expected_version).version
