"""Char-span <-> token alignment and per-token label vectors.

Every position in ProbeLens is a Unicode code point of the NFC-normalised assistant
message. Tokenizer offsets (HF fast tokenizers report code points too) are the bridge
to tokens; UTF-16 units appear only at the browser boundary (helpers at the bottom).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from core.base.errors import UserError
from core.base.types import IGNORE, LABEL_VALUES, LABEL_WORDS, NOT_APPLICABLE, Span, TokenTrace

# --- labels -------------------------------------------------------------------------

# Lower-cased spellings -> canonical paper label. The UI words are aliases so a label
# typed in the browser or a CSV can be read back without a lookup table elsewhere.
_LABEL_ALIASES: dict[str, str] = {
    **{name.lower(): name for name in LABEL_VALUES},
    **{word: name for name, word in LABEL_WORDS.items()},
    "na": NOT_APPLICABLE,
}


def nfc(text: str) -> str:
    """NFC-normalise: spans are counted on NFC text so composed/decomposed inputs agree."""
    return unicodedata.normalize("NFC", text)


def nfc_trace(trace: TokenTrace) -> TokenTrace:
    """The trace of the NFC form of its answer. A model may write characters that NFC changes
    (U+2329 becomes U+3008; e + U+0301 becomes é) while answers and spans are stored in NFC, so
    the pieces' offsets move to the NFC text: a boundary b goes to len(nfc(raw[:b])), which never
    decreases, and a piece keeps its text only where it ends a group (pieces still concatenate to
    the text). A trace whose pieces do not spell its offsets (an imported one) is returned as is."""
    raw = "".join(trace.texts)
    text = nfc(raw)
    if text == raw or (trace.offsets and trace.offsets[-1][1] != len(raw)):
        return trace
    positions: dict[int, int] = {}

    def moved(boundary: int) -> int:
        if boundary not in positions:
            positions[boundary] = min(len(nfc(raw[:boundary])), len(text))
        return positions[boundary]

    offsets: list[tuple[int, int]] = []
    texts: list[str] = []
    floor = 0
    for piece, (start, end) in zip(trace.texts, trace.offsets):
        new_start = max(moved(start), floor)
        new_end = max(moved(end), new_start)
        offsets.append((new_start, new_end))
        texts.append(text[floor:new_end] if piece else "")
        if piece:
            floor = new_end
    return replace(trace, texts=texts, offsets=offsets)


def canonical_label(label: object) -> str:
    """Map any accepted spelling (paper label or UI alias, any case) to the paper label; any other
    value (not text, or an unknown word) is a UserError."""
    if isinstance(label, str):
        found = _LABEL_ALIASES.get(" ".join(label.split()).lower())
        if found is not None:
            return found
    expected = ", ".join(LABEL_VALUES)
    raise UserError(f"unknown label {_quote(label)} (expected one of: {expected})")


def label_value(label: str) -> int | None:
    """1 = hallucinated, 0 = supported, None = not scored (N/A)."""
    return LABEL_VALUES[canonical_label(label)]


def _quote(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else repr(value)


# --- resolving paper-style annotations to spans ------------------------------------


@dataclass
class UnmatchedSpan:
    """An annotation whose text could not be placed in the completion; reported, never guessed."""

    text: str
    index: int | None
    label: str
    reason: str


@dataclass
class Resolution:
    """Result of resolving annotations, with how each matched span was found."""

    spans: list[Span]
    unmatched: list[UnmatchedSpan]
    by_index: int
    by_search: int


def resolve_annotations(text: str, annotations: list[dict]) -> tuple[list[Span], list[UnmatchedSpan]]:
    """Place `{span, index, label, verification_note?}` annotations on `text` (already NFC).

    `index` is trusted only when the text at it equals the span; otherwise the span is
    searched for at or after the start of the previously matched span, the way the
    reference code walks annotations in order. Matched spans keep the input order.
    """
    res = resolve_annotations_detail(text, annotations)
    return res.spans, res.unmatched


def resolve_annotations_detail(text: str, annotations: list[dict]) -> Resolution:
    """Like `resolve_annotations`, also counting matches by index and by search."""
    spans: list[Span] = []
    unmatched: list[UnmatchedSpan] = []
    by_index = by_search = 0
    cursor = 0  # start of the previously matched span
    for pos, ann in enumerate(annotations):
        raw, index, label, note = _annotation_fields(ann, pos)
        span_text = nfc(raw)
        if not span_text:
            unmatched.append(UnmatchedSpan(span_text, index, label, "empty span text"))
            continue
        # The NFC form is what a normalised file holds; the raw form covers the rare
        # substring of NFC text whose own NFC form differs from it.
        candidates = [span_text] if raw == span_text else [span_text, raw]
        found = _match_at_index(text, candidates, index)
        if found is not None:
            by_index += 1
        else:
            found = _match_by_search(text, candidates, cursor)
            if found is None:
                reason = _not_found_reason(text, span_text, index, cursor)
                unmatched.append(UnmatchedSpan(span_text, index, label, reason))
                continue
            by_search += 1
        start, end = found
        spans.append(Span(start, end, label, note))
        cursor = start
    return Resolution(spans, unmatched, by_index, by_search)


def _match_at_index(text: str, candidates: list[str], index: int | None) -> tuple[int, int] | None:
    if index is None or index < 0:
        return None
    for cand in candidates:
        if text[index : index + len(cand)] == cand:
            return index, index + len(cand)
    return None


def _match_by_search(text: str, candidates: list[str], cursor: int) -> tuple[int, int] | None:
    for cand in candidates:
        start = text.find(cand, cursor)
        if start >= 0:
            return start, start + len(cand)
    return None


def _annotation_fields(ann: Any, pos: int) -> tuple[str, int | None, str, str | None]:
    """Validate one annotation dict; a missing label means N/A (ignored), as in the paper."""
    where = f"annotation {pos + 1}"
    if not isinstance(ann, dict):
        raise UserError(f'{where} must be an object with "span" and "label"')
    span_text = ann.get("span")
    if not isinstance(span_text, str):
        raise UserError(f'{where}: "span" must be a string')
    index = ann.get("index")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
        raise UserError(f'{where}: "index" must be an integer or null')
    raw_label = ann.get("label")
    label = NOT_APPLICABLE if raw_label is None else canonical_label(raw_label)
    note = ann.get("verification_note")
    if note is not None and not isinstance(note, str):
        raise UserError(f'{where}: "verification_note" must be a string')
    return span_text, index, label, (note or None)


def _not_found_reason(text: str, span_text: str, index: int | None, cursor: int) -> str:
    where = "in the completion" if text.find(span_text) < 0 else f"at or after position {cursor}"
    bad_index = "" if index is None else f"index {index} does not match; "
    return f"{bad_index}text not found {where}"


# --- token labels -------------------------------------------------------------------


@dataclass
class TokenLabels:
    """Per-token training/evaluation targets for one completion.

    `span_labels` / `span_token_ranges` list only *scored* spans: label not N/A and
    covering at least one (non-zero-width) token. Spans covering no token are dropped,
    so `span_ids` always points at a span that has tokens.
    """

    labels: np.ndarray  # int8 per token: 1, 0, or IGNORE
    span_ids: np.ndarray  # int32 per token: index into span_labels, or -1
    span_labels: np.ndarray  # int8 per scored span: 0 or 1
    span_token_ranges: list[tuple[int, int]]  # (first token, last token exclusive)
    in_span: np.ndarray  # bool per token: overlaps a scored span


def _overlap_mask(starts: np.ndarray, ends: np.ndarray, a: int, b: int) -> np.ndarray:
    """Tokens overlapping [a, b); zero-width tokens (special tokens) never overlap."""
    return (starts < b) & (a < ends) & (starts < ends)


def token_labels(offsets: list[tuple[int, int]], spans: list[Span]) -> TokenLabels:
    """Label each completion token from the spans.

    Overlapping a scored span gives its value (1 wins over 0 when several overlap;
    `span_ids` keeps the first); overlapping only N/A spans gives IGNORE; zero-width
    tokens are IGNORE; everything else is background 0.
    """
    n = len(offsets)
    starts, ends = offset_arrays(offsets)
    labels = np.zeros(n, dtype=np.int8)
    labels[starts >= ends] = IGNORE
    span_ids = np.full(n, -1, dtype=np.int32)
    ignored = np.zeros(n, dtype=bool)
    positive = np.zeros(n, dtype=bool)
    span_labels: list[int] = []
    ranges: list[tuple[int, int]] = []
    for span in spans:
        mask = _overlap_mask(starts, ends, span.start, span.end)
        hit = np.flatnonzero(mask)
        if hit.size == 0:
            continue
        value = label_value(span.label)
        if value is None:
            ignored |= mask
            continue
        span_ids[mask & (span_ids < 0)] = len(span_labels)
        if value == 1:
            positive |= mask
        span_labels.append(value)
        ranges.append((int(hit[0]), int(hit[-1]) + 1))
    in_span = span_ids >= 0
    labels[ignored & ~in_span] = IGNORE
    labels[in_span] = 0
    labels[positive] = 1
    return TokenLabels(labels, span_ids, np.asarray(span_labels, dtype=np.int8), ranges, in_span)


def offset_arrays(offsets: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def token_ranges_to_char_span(offsets: list[tuple[int, int]], first: int, last_exclusive: int) -> tuple[int, int]:
    """The smallest char span covering tokens [first, last_exclusive) (snapping a selection)."""
    if not 0 <= first < last_exclusive <= len(offsets):
        raise ValueError(f"token range [{first}, {last_exclusive}) outside 0..{len(offsets)}")
    starts, ends = offset_arrays(offsets[first:last_exclusive])
    wide = starts < ends
    if wide.any():
        starts, ends = starts[wide], ends[wide]
    return int(starts.min()), int(ends.max())


def true_runs(flags: Sequence[bool]) -> list[tuple[int, int]]:
    """Maximal runs of true flags as token ranges [first, last exclusive)."""
    runs: list[tuple[int, int]] = []
    first: int | None = None
    for i, flag in enumerate([*flags, False]):
        if flag and first is None:
            first = i
        elif not flag and first is not None:
            runs.append((first, i))
            first = None
    return runs


def over_threshold(score: float | None, threshold: float) -> bool:
    """The one rule for a flagged token: its score is known (not None, not NaN) and >= threshold."""
    return score is not None and not math.isnan(score) and score >= threshold


def runs_over(scores: Sequence[float | None], threshold: float) -> list[tuple[int, int]]:
    """Maximal runs of tokens over the threshold (`over_threshold`), as [first, last exclusive).

    What "tokens over the threshold form a span" means everywhere (suggestions, predicted
    spans, the review's probe spans): an unknown score is never over, so it splits a run."""
    return true_runs([over_threshold(s, threshold) for s in scores])


def trailing_run(scores: Sequence[float | None], threshold: float) -> int:
    """Where the run over the threshold that ends with the last score starts (len(scores) when
    the last score is not over): the last of `runs_over`, found from the end in O(run)."""
    first = len(scores)
    while first > 0 and over_threshold(scores[first - 1], threshold):
        first -= 1
    return first


def _in_word(ch: str) -> bool:
    return ch.isalnum() or ch in "_'’-"


def whole_word_spans(text: str, spans: Sequence[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    """Spans (start, end, risk) widened to whole words (a run over the threshold that starts or
    ends inside a word takes the whole word) and trimmed of surrounding spaces; spans that then
    touch or overlap are one, with the higher risk. Ordered by start."""
    widened: list[tuple[int, int, float]] = []
    for start, end, risk in spans:
        start, end = max(0, start), min(len(text), end)
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start >= end:
            continue
        while start > 0 and _in_word(text[start - 1]) and _in_word(text[start]):
            start -= 1
        while end < len(text) and _in_word(text[end]) and _in_word(text[end - 1]):
            end += 1
        widened.append((start, end, risk))
    merged: list[tuple[int, int, float]] = []
    for start, end, risk in sorted(widened):
        if merged and start <= merged[-1][1]:
            first, last, top = merged[-1]
            merged[-1] = (first, max(last, end), max(top, risk))
        else:
            merged.append((start, end, risk))
    return merged


def char_span_to_token_range(offsets: list[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """Tokens overlapping [start, end) as (first, last exclusive); None if no token does."""
    if not offsets:
        return None
    starts, ends = offset_arrays(offsets)
    hit = np.flatnonzero(_overlap_mask(starts, ends, start, end))
    if hit.size == 0:
        return None
    return int(hit[0]), int(hit[-1]) + 1


# --- tokenizing a completion ----------------------------------------------------------


def completion_offsets(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and code-point offsets of `text` (the NFC completion) tokenized alone.

    Offsets are repaired (see `repair_offsets`) so downstream code can rely on them:
    clamped to [0, len(text)], starts non-decreasing, every code point covered.
    Byte-level pieces of one character keep their identical offsets.
    """
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError as exc:
        raise UserError("this tokenizer gives no character offsets (a fast tokenizer is needed)") from exc
    ids = [int(i) for i in enc["input_ids"]]
    raw = [(int(s), int(e)) for s, e in enc["offset_mapping"]]
    if len(raw) != len(ids):
        raise UserError("tokenizer returned offsets that do not match its tokens")
    return ids, repair_offsets(raw, len(text))


def repair_offsets(offsets: list[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """Clamp, make starts monotone and close gaps so the tokens cover [0, length).

    A gap before a token (offset trimming, a dropping normalizer) is given to that
    token; a trailing gap is given to the token that reached furthest last.
    """
    fixed: list[tuple[int, int]] = []
    prev_start = covered = 0
    for s, e in offsets:
        s = min(max(s, prev_start), length)
        e = min(max(e, s), length)
        if s > covered:
            s = covered
        fixed.append((s, e))
        prev_start = s
        covered = max(covered, e)
    if fixed and covered < length:
        last = max(i for i, (_, e) in enumerate(fixed) if e == covered)
        fixed[last] = (fixed[last][0], length)
    return fixed


# --- browser boundary: UTF-16 code units <-> code points ------------------------------


def utf16_to_codepoint(text: str, utf16_index: int) -> int:
    """Code-point index of a UTF-16 index (what a browser Selection reports).

    An index that falls between the two halves of a surrogate pair snaps down to the
    start of that character, so a selection never splits an astral character.
    """
    if utf16_index < 0:
        raise ValueError(f"UTF-16 index {utf16_index} is negative")
    units = 0
    for i, ch in enumerate(text):
        width = 2 if ord(ch) > 0xFFFF else 1
        if units + width > utf16_index:
            return i
        units += width
    if utf16_index > units:
        raise ValueError(f"UTF-16 index {utf16_index} is past the end ({units})")
    return len(text)


def codepoint_to_utf16(text: str, cp_index: int) -> int:
    """UTF-16 index of a code-point index (astral characters count 2)."""
    if not 0 <= cp_index <= len(text):
        raise ValueError(f"code-point index {cp_index} outside 0..{len(text)}")
    return len(text[:cp_index].encode("utf-16-le", "surrogatepass")) // 2
