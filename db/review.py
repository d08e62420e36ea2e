"""The reviewer's view of one generation, and turning annotators' work into the gold set.

A reviewer sees every annotator's spans side by side with the probe's predicted spans and
the places where they disagree, then either picks one annotator's set or saves a merge as
gold. Gold is an ordinary versioned annotation set (owner "gold"), so two reviewers cannot
overwrite each other, and every gold save is a "review.gold" event whose detail records
the decision ("picked alice", "merged", ...).

Functions take a Session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.base.errors import UserError
from core.base.types import NOT_SUPPORTED, Span, TokenTrace
from core.base.types import Generation as CoreGeneration
from core.text.editing import removed_spans
from core.text.tokens import label_value, nfc, runs_over, token_ranges_to_char_span, true_runs
from db.annotations import ENTITY, get_set, save_annotation_set, sets_for_generation, spans_from_json, spans_of
from db.generations import get_generation, to_core, trace_of
from db.models import GOLD_OWNER, AnnotationSet, Event, User
from db.predictions import scores_for
from db.users import get_user

REVIEW_ACTION = "review.gold"
REVIEW_ROLES = ("reviewer", "admin")
PROBE_LABEL = NOT_SUPPORTED
MAX_DECISION = 500


@dataclass
class ReviewBundle:
    """Everything the review page shows for one generation.

    - annotators: {user name: (version, spans)} for every annotator set, by name;
    - gold: (version, spans) of the gold set, or None if there is none yet;
    - probe_scores: the cached per-token scores of `probe_version` (None if not cached;
      also copied into `trace.scores` when the lengths match, for the heatmap);
    - probe_spans: runs of consecutive tokens scoring >= threshold, labelled "Not Supported",
      with the run's highest score in the note ("max 0.912");
    - disagreements: char ranges [start, end) where the annotators (and the probe, if
      asked for) do not agree; see `disagreement_ranges`.
    """

    generation_id: int
    dataset: str
    generation: CoreGeneration
    trace: TokenTrace | None
    annotators: dict[str, tuple[int, list[Span]]]
    gold: tuple[int, list[Span]] | None
    probe_version: int | None = None
    threshold: float = 0.5
    probe_scores: list[float] | None = None
    probe_spans: list[Span] = field(default_factory=list)
    disagreements: list[tuple[int, int]] = field(default_factory=list)


# --- per-token comparison ---------------------------------------------------------------


def _token_offsets(trace: TokenTrace | None, completion: str) -> list[tuple[int, int]]:
    """The trace's offsets; one "token" per character for a generation stored without tokens.

    Characters are the finest grain spans can have, so the comparison still works, only
    the ranges are not token-snapped.
    """
    if trace is not None and trace.offsets:
        return list(trace.offsets)
    return [(i, i + 1) for i in range(len(completion))]


def _token_label_sets(offsets: list[tuple[int, int]], spans: list[Span]) -> list[frozenset[str]]:
    """For each token, the labels of the spans overlapping it (zero-width tokens get none)."""
    bounds = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    starts, ends = bounds[:, 0], bounds[:, 1]
    labels: list[set[str]] = [set() for _ in offsets]
    for span in spans:
        hit = np.flatnonzero((starts < span.end) & (span.start < ends) & (starts < ends))
        for i in hit:
            labels[i].add(span.label)
    return [frozenset(found) for found in labels]


def _hallucinated(labels: frozenset[str]) -> bool:
    return any(label_value(label) == 1 for label in labels)


def _disagreeing_tokens(annotator_labels: list[list[frozenset[str]]], probe_flags: list[bool] | None) -> list[bool]:
    """Per token: do the sources differ?

    Annotators are compared on their exact label sets (an explicit "Supported" span differs
    from no span: one person judged the claim, the other did not see one). The probe only
    says "hallucinated or not", so it is compared with each annotator on that alone.
    """
    n = len(annotator_labels[0]) if annotator_labels else len(probe_flags or [])
    flags: list[bool] = []
    for i in range(n):
        sets = {labels[i] for labels in annotator_labels}
        differ = len(sets) > 1
        if probe_flags is not None and i < len(probe_flags):
            differ = differ or any(_hallucinated(labels) != probe_flags[i] for labels in sets)
        flags.append(differ)
    return flags


def _char_ranges(offsets: list[tuple[int, int]], runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Token runs as char ranges, dropping runs of only zero-width tokens."""
    ranges = [token_ranges_to_char_span(offsets, first, last) for first, last in runs]
    return [(start, end) for start, end in ranges if end > start]


def disagreement_ranges(
    offsets: list[tuple[int, int]],
    annotator_spans: list[list[Span]],
    probe_scores: list[float] | None = None,
    threshold: float = 0.5,
) -> list[tuple[int, int]]:
    """Char ranges where the sources disagree, consecutive disagreeing tokens merged.

    With a single source (one annotator and no probe) nothing can disagree. The gold set is
    not a source: it is what the reviewer is about to decide.
    """
    probe_flags = None if probe_scores is None else [bool(s >= threshold) for s in probe_scores]
    if len(annotator_spans) + (probe_flags is not None) < 2 or not offsets:
        return []
    labels = [_token_label_sets(offsets, spans) for spans in annotator_spans]
    return _char_ranges(offsets, true_runs(_disagreeing_tokens(labels, probe_flags)))


def probe_spans(offsets: list[tuple[int, int]], scores: list[float], threshold: float = 0.5) -> list[Span]:
    """Runs of consecutive tokens scoring >= threshold as "Not Supported" spans; note = the run's max.

    NaN scores (tokens the probe did not score) never reach the threshold, so they split runs.
    """
    n = min(len(offsets), len(scores))
    spans: list[Span] = []
    for first, last in runs_over(scores[:n], threshold):
        start, end = token_ranges_to_char_span(offsets, first, last)
        if end > start:
            spans.append(Span(start, end, PROBE_LABEL, f"max {max(scores[first:last]):.3f}"))
    return spans


# --- the bundle -------------------------------------------------------------------------


def _annotator_names(session: Session, generation_id: int) -> dict[int, str]:
    """set id -> the annotator's name (the owner key if the account is gone)."""
    query = (
        select(AnnotationSet.id, AnnotationSet.owner, User.name)
        .outerjoin(User, User.id == AnnotationSet.annotator_id)
        .where(AnnotationSet.generation_id == generation_id, AnnotationSet.owner != GOLD_OWNER)
    )
    return {set_id: name or owner for set_id, owner, name in session.execute(query)}


def _split_sets(
    session: Session, generation_id: int
) -> tuple[dict[str, tuple[int, list[Span]]], tuple[int, list[Span]] | None]:
    names = _annotator_names(session, generation_id)
    annotators: dict[str, tuple[int, list[Span]]] = {}
    gold = None
    for annotation_set in sets_for_generation(session, generation_id):
        entry = (annotation_set.version, spans_of(annotation_set))
        if annotation_set.owner == GOLD_OWNER:
            gold = entry
        else:
            annotators[names.get(annotation_set.id, annotation_set.owner)] = entry
    return dict(sorted(annotators.items())), gold


def review_bundle(
    session: Session,
    generation_id: int,
    probe_version: int | None,
    threshold: float = 0.5,
    *,
    include_probe: bool = False,
) -> ReviewBundle:
    """Load one generation for review.

    `probe_version` None means no probe columns; an unknown version is a UserError. The
    probe joins the disagreement comparison only with `include_probe` (by default the
    ranges show where the *people* differ, which is what a reviewer has to settle).
    """
    row = get_generation(session, generation_id)
    trace = trace_of(row)
    completion = nfc(row.completion)
    offsets = _token_offsets(trace, completion)
    annotators, gold = _split_sets(session, generation_id)
    scores = scores_for(session, probe_version, generation_id) if probe_version is not None else None
    predicted: list[Span] = []
    if scores is not None and trace is not None:
        predicted = probe_spans(list(trace.offsets), scores, threshold)
        if len(scores) == len(trace.offsets):
            trace.scores = list(scores)
    compare_probe = scores if include_probe and trace is not None else None
    return ReviewBundle(
        generation_id=row.id,
        dataset=row.dataset.name,
        generation=to_core(row),
        trace=trace,
        annotators=annotators,
        gold=gold,
        probe_version=probe_version,
        threshold=threshold,
        probe_scores=scores,
        probe_spans=predicted,
        disagreements=disagreement_ranges(
            offsets, [spans for _, spans in annotators.values()], compare_probe, threshold
        ),
    )


# --- deciding gold ----------------------------------------------------------------------


def _check_reviewer(reviewer: User | None) -> None:
    if reviewer is None or reviewer.role not in REVIEW_ROLES or not reviewer.active:
        raise UserError("only an active reviewer or admin can save the gold set")


def _clean_decision(decision: object) -> str:
    cleaned = " ".join(decision.split()) if isinstance(decision, str) else ""
    if not cleaned:
        raise UserError('a gold save needs a decision (for example "picked alice" or "merged")')
    if len(cleaned) > MAX_DECISION:
        raise UserError(f"the decision is longer than {MAX_DECISION} characters")
    return cleaned


class GoldRemovalError(UserError):
    """A gold save that would take spans away from the gold set, not yet confirmed.

    `removed` lists them, so the page can say which and ask; nothing was written."""

    def __init__(self, removed: list[Span], text: str) -> None:
        self.removed = removed
        shown = ", ".join(repr(text[s.start : s.end]) for s in removed[:5])
        more = f" and {len(removed) - 5} more" if len(removed) > 5 else ""
        noun = "span" if len(removed) == 1 else "spans"
        super().__init__(f"this save would remove {len(removed)} gold {noun} ({shown}{more}); confirm to remove them")


def save_gold(
    session: Session,
    generation_id: int,
    spans: list[Span],
    *,
    expected_version: int,
    reviewer: User,
    decision: str,
    allow_removal: bool = False,
) -> AnnotationSet:
    """Store `spans` as the gold set if it is still at `expected_version` (0 = no gold yet).

    The decision goes into the "review.gold" event's detail, so the log says not only what
    gold became but why. ConflictError (nothing written) if another reviewer got there first;
    GoldRemovalError (nothing written) if the save drops or changes spans of the current gold
    and `allow_removal` is not set: gold is never lost without a reviewer saying so.
    """
    _check_reviewer(reviewer)
    decision = _clean_decision(decision)
    current = get_set(session, generation_id, None)
    if not allow_removal and current is not None and current.version == expected_version:
        removed = removed_spans(spans_of(current), spans)
        if removed:
            raise GoldRemovalError(removed, nfc(get_generation(session, generation_id).completion))
    return save_annotation_set(
        session,
        generation_id,
        spans,
        owner=None,
        expected_version=expected_version,
        actor=reviewer,
        action=REVIEW_ACTION,
        detail=decision,
    )


@dataclass(frozen=True)
class GoldVersion:
    """One version of an answer's gold set, as the event log recorded it."""

    version: int
    at: datetime
    by: str | None
    action: str
    decision: str | None
    spans: list[Span]


def gold_history(session: Session, generation_id: int) -> list[GoldVersion]:
    """Every stored version of the gold set, oldest first (from the append-only event log)."""
    current = get_set(session, generation_id, None)
    if current is None:
        return []
    query = (
        select(Event, User.name)
        .outerjoin(User, User.id == Event.user_id)
        .where(Event.entity == ENTITY, Event.entity_id == current.id)
        .order_by(Event.id)
    )
    history: list[GoldVersion] = []
    for event, name in session.execute(query):
        after = event.after or {}
        if "version" not in after:
            continue
        history.append(
            GoldVersion(int(after["version"]), event.at, name, event.action, event.detail, spans_from_json(after))
        )
    return history


def revert_gold(
    session: Session, generation_id: int, version: int, *, expected_version: int, reviewer: User
) -> AnnotationSet:
    """Gold := the spans it had at `version`, stored as a new version (audited, revertible)."""
    found = [entry for entry in gold_history(session, generation_id) if entry.version == version]
    if not found:
        raise UserError(f"answer #{generation_id} has no gold version {version} in the event log")
    return save_gold(
        session,
        generation_id,
        found[-1].spans,
        expected_version=expected_version,
        reviewer=reviewer,
        decision=f"reverted to gold version {version}",
        allow_removal=True,
    )


def pick_annotator(
    session: Session,
    generation_id: int,
    annotator: str,
    *,
    expected_version: int,
    reviewer: User,
    allow_removal: bool = False,
) -> AnnotationSet:
    """Gold := the named annotator's current spans (notes included); decision "picked <name>"."""
    _check_reviewer(reviewer)
    person = get_user(session, annotator)
    chosen = get_set(session, generation_id, person)
    if chosen is None:
        raise UserError(f"{person.name} has not labelled generation {generation_id}")
    return save_gold(
        session,
        generation_id,
        spans_of(chosen),
        expected_version=expected_version,
        reviewer=reviewer,
        decision=f"picked {person.name}",
        allow_removal=allow_removal,
    )
