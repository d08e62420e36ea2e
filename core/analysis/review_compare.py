"""What a reviewer compares for one answer: where annotators (and the probe) disagree, and the
probe's predicted spans.

Pure: `db.review.review_record` reads the answer, its sets and the cached probe scores as a
`ReviewRecord`; `review_bundle` turns that into what the Review page shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from core.base.types import NOT_SUPPORTED, Generation, Span, TokenTrace
from core.text.tokens import label_value, nfc, runs_over, token_ranges_to_char_span, true_runs

PROBE_LABEL = NOT_SUPPORTED


@dataclass
class ReviewRecord:
    """One generation as storage holds it for review (plain data, no rows).

    - annotators: {user name: (version, spans)} for every annotator set, by name;
    - gold: (version, spans) of the gold set, or None if there is none yet;
    - probe_scores: the cached per-token scores of `probe_version` (None if not cached).
    """

    generation_id: int
    dataset: str
    generation: Generation
    trace: TokenTrace | None
    annotators: dict[str, tuple[int, list[Span]]]
    gold: tuple[int, list[Span]] | None
    probe_version: int | None = None
    probe_scores: list[float] | None = None


@dataclass
class ReviewBundle:
    """Everything the review page shows for one generation.

    The record's fields, and
    - trace: with the probe's scores in `scores` when their lengths match (for the heatmap);
    - probe_spans: runs of consecutive tokens scoring >= threshold, labelled "Not Supported",
      with the run's highest score in the note ("max 0.912");
    - disagreements: char ranges [start, end) where the annotators (and the probe, if
      asked for) do not agree; see `disagreement_ranges`.
    """

    generation_id: int
    dataset: str
    generation: Generation
    trace: TokenTrace | None
    annotators: dict[str, tuple[int, list[Span]]]
    gold: tuple[int, list[Span]] | None
    probe_version: int | None = None
    threshold: float = 0.5
    probe_scores: list[float] | None = None
    probe_spans: list[Span] = field(default_factory=list)
    disagreements: list[tuple[int, int]] = field(default_factory=list)


# --- per-token comparison ---------------------------------------------------------------


def token_offsets(trace: TokenTrace | None, completion: str) -> list[tuple[int, int]]:
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


def review_bundle(record: ReviewRecord, threshold: float = 0.5, *, include_probe: bool = False) -> ReviewBundle:
    """What the Review page shows for `record`.

    The probe joins the disagreement comparison only with `include_probe` (by default the
    ranges show where the *people* differ, which is what a reviewer has to settle).
    """
    trace, scores = record.trace, record.probe_scores
    offsets = token_offsets(trace, nfc(record.generation.completion))
    predicted: list[Span] = []
    if scores is not None and trace is not None:
        predicted = probe_spans(list(trace.offsets), scores, threshold)
        if len(scores) == len(trace.offsets):
            trace = replace(trace, scores=list(scores))
    compare_probe = scores if include_probe and trace is not None else None
    return ReviewBundle(
        generation_id=record.generation_id,
        dataset=record.dataset,
        generation=record.generation,
        trace=trace,
        annotators=record.annotators,
        gold=record.gold,
        probe_version=record.probe_version,
        threshold=threshold,
        probe_scores=scores,
        probe_spans=predicted,
        disagreements=disagreement_ranges(
            offsets, [spans for _, spans in record.annotators.values()], compare_probe, threshold
        ),
    )
