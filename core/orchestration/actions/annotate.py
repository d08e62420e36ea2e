"""The Annotate page's actions: its queue, the open answer, save, skip, comments, guidelines."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.analysis.queue_order import DEMO_DATASET
from core.base.errors import UserError
from core.base.types import Generation, Span, TokenTrace
from core.orchestration import launcher, webhooks, work_queue
from core.orchestration.actions.acting import Actor, checker, reading, writing
from core.orchestration.colour_status import missing_scores_note, no_colour_reason
from core.orchestration.judge_evidence import CitedPassage as CitedPassage
from core.orchestration.judge_evidence import JudgeEvidence, judge_work
from core.text.tokens import nfc
from db import Database, assignments, comments, guidelines, skips
from db.annotations import ConflictError, get_set, save_annotation_set, spans_of
from db.generations import get_generation, to_core, trace_of
from db.predictions import scores_for
from db.queue import PREVIEW_CHARS as PREVIEW_CHARS

PAGE = "annotate"
RESCORE_PAGE = "probes"  # starting a re-score is an admin's, as on the Probes page
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
    #: the same spans for the evidence view: each with the passages it cites
    judge_evidence: list[JudgeEvidence] = field(default_factory=list)
    #: the version whose scores this answer lacks, with no re-score running: an admin may start one
    rescore_version: int | None = None
    #: the answer's gold spans (empty without gold) and its gold version (0: none)
    gold_spans: list[Span] = field(default_factory=list)
    gold_version: int = 0
    #: True when `my_spans` are the demo's gold, pre-filled for practice (nothing of mine stored yet)
    prefilled: bool = False


def open_answer(storage: Database, actor: Actor, generation_id: int, probe_version: int | None) -> OpenAnswer:
    with reading(storage, actor, PAGE) as (session, me):
        row = get_generation(session, generation_id)
        my_set = get_set(session, generation_id, me)
        no_colours = no_colour_reason(session, scoring_version=probe_version, generation_id=generation_id)
        gold = get_set(session, generation_id, None)
        gold_spans = spans_of(gold) if gold else []
        # a demo answer I have not labelled opens with its gold as editable pre-annotations
        prefilled = my_set is None and gold is not None and row.dataset.name == DEMO_DATASET
        missing = probe_version is not None and no_colours == missing_scores_note(probe_version)
        judges = judge_work(session, generation_id, nfc(row.completion))
        return OpenAnswer(
            judge_suggestions=judges.suggestions,
            judge_evidence=judges.evidence,
            generation=to_core(row),
            trace=trace_of(row),
            where=f"{row.dataset.name} / {row.split}",
            my_spans=spans_of(my_set) if my_set else list(gold_spans) if prefilled else [],
            version=my_set.version if my_set else 0,
            scores=scores_for(session, probe_version, generation_id) if probe_version else None,
            no_colours=no_colours,
            rescore_version=probe_version if missing else None,
            gold_spans=gold_spans,
            gold_version=gold.version if gold else 0,
            prefilled=prefilled,
        )


def start_rescore(storage: Database, actor: Actor, probe_version: int) -> int:
    """An admin's Re-score from Annotate: store `probe_version`'s scores for every answer that
    lacks them. Checked against the Probes page (admins only) inside the run's transaction."""
    return launcher.start_rescore(storage, probe_version, checker(actor, RESCORE_PAGE))


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
            version, who, saved = stored.version, me.name, spans_of(stored)
    except ConflictError as exc:
        return Conflict(list(exc.current_spans), exc.current_version, exc.saved_by)
    webhooks.notify(  # after the commit: receivers never see a save that did not happen
        "annotation.save",
        {"generation_id": generation_id, "version": version, "user": who, "spans": webhooks.spans_json(saved)},
    )
    return Saved(version)


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
