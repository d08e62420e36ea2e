"""Annotation editing rules shared by the browser span editor, the pages and the CLI.

Pure Python on `core.base.types.Span` lists, so every rule is tested without a browser.
Positions are Unicode code points of the (NFC) completion; UTF-16 offsets from a
browser selection are converted once, here, by `utf16_selection_to_span`.

Invariant kept by every operation that returns spans: no two spans of *different*
labels overlap, and overlapping spans of the *same* label are merged. Results are
sorted by (start, end), so an index into a result refers to that order.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from core.base.errors import UserError
from core.base.types import NOT_SUPPORTED, Span
from core.text.tokens import (
    canonical_label,
    codepoint_to_utf16,
    runs_over,
    token_ranges_to_char_span,
    utf16_to_codepoint,
)

Offsets = Sequence[tuple[int, int]]
NO_SPAN = "none"  # a pick in `merge_groups` meaning "no gold span here"
CURRENT_GOLD = "current gold"  # the source in a merge that stands for the gold set as it is now

# --- selections -----------------------------------------------------------------------


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink [start, end) past whitespace, so a selected " Paris" marks "Paris"."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


# Punctuation that may belong to what is marked ("72%", "#1", "AT&T", "-40"): kept at the
# ends of a selection. Every other Unicode punctuation character (category P*) is trimmed.
_KEEP_PUNCTUATION = frozenset("%\u2030\u2031\u066a#@&-")


def is_edge_punctuation(ch: str) -> bool:
    """Punctuation a token-snapped selection drops at its ends: Unicode category P*, less
    the few characters in `_KEEP_PUNCTUATION`."""
    return unicodedata.category(ch)[0] == "P" and ch not in _KEEP_PUNCTUATION


def _trim_selection(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink [start, end) past whitespace and punctuation, so a drag that ends a few pixels
    into a following comma marks the words without it. A selection of punctuation alone
    keeps it (trimmed of whitespace only)."""
    start, end = _trim(text, start, end)
    a, b = start, end
    while a < b and (text[a].isspace() or is_edge_punctuation(text[a])):
        a += 1
    while b > a and (text[b - 1].isspace() or is_edge_punctuation(text[b - 1])):
        b -= 1
    return (a, b) if a < b else (start, end)


def selection_to_span(
    offsets: Offsets,
    first_token: int,
    last_token: int,
    *,
    text: str,
    char_start: int | None = None,
    char_end: int | None = None,
) -> tuple[int, int]:
    """Code-point span of a selection in the editor.

    Default (token-snapped): the union of tokens `first_token`..`last_token`
    (inclusive, either order: a drag may go backwards), trimmed of whitespace, because
    most tokenizers glue the leading space to the word, and of punctuation at its ends
    (`_trim_selection`), because a drag easily ends inside a narrow comma. With
    `char_start`/`char_end` (the Alt modifier: character precision) those code points
    are used as given.
    """
    if char_start is not None or char_end is not None:
        return _char_selection(text, char_start, char_end)
    first, last = sorted((first_token, last_token))
    if not 0 <= first <= last < len(offsets):
        raise UserError(f"selected tokens {first}..{last} are outside the {len(offsets)} tokens")
    start, end = token_ranges_to_char_span(list(offsets), first, last + 1)
    start, end = _trim_selection(text, max(start, 0), min(end, len(text)))
    if start >= end:
        raise UserError("the selection holds only whitespace; select a word")
    return start, end


def _char_selection(text: str, char_start: int | None, char_end: int | None) -> tuple[int, int]:
    if char_start is None or char_end is None:
        raise UserError("a character selection needs both a start and an end")
    start, end = sorted((char_start, char_end))
    if start < 0 or end > len(text):
        raise UserError(f"selection {start}..{end} is outside the text (0..{len(text)})")
    if start == end:
        raise UserError("the selection is empty")
    return start, end


def utf16_selection_to_span(text: str, u16_start: int, u16_end: int) -> tuple[int, int]:
    """Code-point span of a browser selection given in UTF-16 units (either order).

    A boundary inside a surrogate pair widens the span to the whole character — the
    start snaps down, the end snaps up — so half an emoji selects the emoji.
    """
    lo, hi = sorted((u16_start, u16_end))
    try:
        start = utf16_to_codepoint(text, lo)
        end = utf16_to_codepoint(text, hi)
    except ValueError as exc:
        raise UserError(f"selection outside the text: {exc}") from exc
    if codepoint_to_utf16(text, end) < hi:
        end += 1
    if start >= end:
        raise UserError("the selection is empty")
    return start, end


# --- undo / redo ----------------------------------------------------------------------


class EditHistory:
    """Undo/redo over whole span lists (snapshots are small; diffs would be fragile).

    `apply` after an `undo` drops the redo branch, as in every editor. At most `limit`
    undo steps are kept; the oldest fall off. Snapshots are tuples so a caller
    mutating a returned list cannot rewrite history.
    """

    def __init__(self, initial: Sequence[Span] = (), limit: int = 200) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._current: tuple[Span, ...] = tuple(initial)
        self._undo: deque[tuple[Span, ...]] = deque(maxlen=limit)
        self._redo: list[tuple[Span, ...]] = []

    @property
    def current(self) -> list[Span]:
        return list(self._current)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def apply(self, new_spans: Sequence[Span]) -> list[Span]:
        """Make `new_spans` current; a no-op change records no step."""
        snapshot = tuple(new_spans)
        if snapshot != self._current:
            self._undo.append(self._current)
            self._current = snapshot
            self._redo.clear()
        return self.current

    def undo(self) -> list[Span]:
        """Step back; with nothing to undo the current spans are returned unchanged."""
        if self._undo:
            self._redo.append(self._current)
            self._current = self._undo.pop()
        return self.current

    def redo(self) -> list[Span]:
        """Step forward again; with nothing to redo the current spans are returned unchanged."""
        if self._redo:
            self._undo.append(self._current)
            self._current = self._redo.pop()
        return self.current


# --- span operations ------------------------------------------------------------------


def _checked(span: Span) -> Span:
    """Canonical label, non-empty range: the shape every stored span has."""
    if span.start < 0 or span.end <= span.start:
        raise UserError(f"span {span.start}..{span.end} is empty or negative")
    return replace(span, label=canonical_label(span.label), note=span.note or None)


def _overlap(a: Span, b: Span) -> bool:
    return a.start < b.end and b.start < a.end


def _sorted(spans: Sequence[Span]) -> list[Span]:
    return sorted(spans, key=lambda s: (s.start, s.end, s.label))


def _absorb_same_label(spans: list[Span], new: Span) -> tuple[Span, list[Span]]:
    """Grow `new` over every same-label span it overlaps (repeating: growing can reach more)."""
    rest = list(spans)
    while True:
        hits = [s for s in rest if s.label == new.label and _overlap(s, new)]
        if not hits:
            return new, rest
        note = new.note or next((s.note for s in hits if s.note), None)
        new = Span(min([new.start, *(s.start for s in hits)]), max([new.end, *(s.end for s in hits)]), new.label, note)
        rest = [s for s in rest if s not in hits]


def _cut(span: Span, hole: Span, text: str | None) -> list[Span]:
    """What is left of `span` outside `hole`: zero, one or two pieces."""
    pieces = [(span.start, min(span.end, hole.start)), (max(span.start, hole.end), span.end)]
    out = []
    for start, end in pieces:
        if text is not None:
            start, end = _trim(text, start, end)
        if start < end:
            out.append(replace(span, start=start, end=end))
    return out


def _insert(spans: list[Span], span: Span, text: str | None) -> list[Span]:
    new, rest = _absorb_same_label(spans, span)
    out = [new]
    for s in rest:
        out.extend(_cut(s, new, text) if _overlap(s, new) else [s])
    return out


def normalise_spans(spans: Sequence[Span], text: str | None = None) -> list[Span]:
    """Make any span list valid by adding its spans one by one (later spans win)."""
    out: list[Span] = []
    for span in spans:
        out = _insert(out, _checked(span), text)
    return _sorted(out)


def add_span(spans: Sequence[Span], span: Span, *, text: str | None = None) -> list[Span]:
    """Add `span`; the rule when it overlaps existing spans:

    - same label: merged into one span covering both (the new note wins, else the old);
    - different label: the new span wins — the overlapped part of the old span is
      removed; an old span cut in two keeps both pieces (label and note copied);
      an old span entirely covered disappears.
    With `text`, leftover pieces are trimmed of whitespace and dropped if nothing is left.
    """
    return _sorted(_insert(normalise_spans(spans, text), _checked(span), text))


def _at(spans: Sequence[Span], index: int) -> Span:
    if not 0 <= index < len(spans):
        raise UserError(f"no span number {index} (there are {len(spans)})")
    return spans[index]


def delete_span(spans: Sequence[Span], index: int) -> list[Span]:
    """Remove the span at `index`."""
    _at(spans, index)
    return _sorted([s for i, s in enumerate(spans) if i != index])


def relabel(spans: Sequence[Span], index: int, label: str) -> list[Span]:
    """Give the span at `index` a new label; re-added so the overlap rules still hold."""
    target = replace(_at(spans, index), label=canonical_label(label))
    rest = [s for i, s in enumerate(spans) if i != index]
    return add_span(rest, target)


def set_note(spans: Sequence[Span], index: int, note: str | None) -> list[Span]:
    """Attach a verification note to the span at `index` (blank clears it)."""
    target = _at(spans, index)
    cleaned = (note or "").strip() or None
    return _sorted([replace(target, note=cleaned) if i == index else s for i, s in enumerate(spans)])


# --- probe suggestions ----------------------------------------------------------------


@dataclass(frozen=True)
class Suggestion:
    """A span the probe proposes (a run of high-scoring tokens, scored by its maximum), or an LLM
    judge proposes: then with its own `label` and `note`, which accepting it keeps."""

    start: int
    end: int
    score: float
    label: str | None = None
    note: str | None = None


def suggest_spans(offsets: Offsets, scores: Sequence[float], threshold: float, text: str) -> list[Suggestion]:
    """Suggested spans from per-token probe scores, whitespace-trimmed, whitespace-only runs dropped."""
    if len(scores) != len(offsets):
        raise UserError(f"{len(scores)} scores for {len(offsets)} tokens")
    out = []
    for first, last in runs_over(scores, threshold):
        start, end = token_ranges_to_char_span(list(offsets), first, last)
        start, end = _trim(text, max(start, 0), min(end, len(text)))
        if start < end:
            out.append(Suggestion(start, end, float(max(scores[first:last]))))
    return out


def accept_suggestions(
    spans: Sequence[Span],
    suggestions: Sequence[Suggestion],
    min_score: float,
    label: str = NOT_SUPPORTED,
    *,
    overwrite: bool = False,
) -> list[Span]:
    """Bulk-accept suggestions scoring >= `min_score` as spans with `label` (a judge's suggestion
    keeps its own label and note).

    A suggestion overlapping an existing span is skipped unless `overwrite`: a
    person's decision is not replaced by the probe's without asking.
    """
    out = normalise_spans(spans)
    for sug in suggestions:
        if sug.score < min_score:
            continue
        new = Span(sug.start, sug.end, sug.label or label, sug.note or None)
        if not overwrite and any(_overlap(new, s) for s in out):
            continue
        out = add_span(out, new)
    return out


# --- comparing and merging annotators -------------------------------------------------


@dataclass(frozen=True)
class SpanGroup:
    """Spans of several annotators that overlap (transitively), shown as one review row.

    `spans[name]` is that annotator's version of the region: usually one span, possibly
    several (one person may split what another marks as one span), empty if none.
    `agree` is True when every annotator's version has the same ranges and labels.
    """

    start: int
    end: int
    spans: dict[str, tuple[Span, ...]]
    agree: bool


def _version(spans: tuple[Span, ...]) -> tuple[tuple[int, int, str], ...]:
    """What must match for two annotators to agree: positions and labels, not notes."""
    return tuple((s.start, s.end, s.label) for s in spans)


def _annotated(sets: Mapping[str, Sequence[Span] | None]) -> dict[str, list[Span]]:
    """Annotators who annotated the generation (None = did not), labels canonical."""
    return {name: _sorted([_checked(s) for s in spans]) for name, spans in sets.items() if spans is not None}


def diff_sets(sets: Mapping[str, Sequence[Span] | None], current_gold: Sequence[Span] | None = None) -> list[SpanGroup]:
    """Group overlapping spans across annotators, in text order.

    A group is a connected set of spans under character overlap, so every span lands in
    exactly one group and groups never overlap each other. Annotators mapped to None
    (did not annotate) are left out. `current_gold` (the stored gold set, if any) joins as
    the source `CURRENT_GOLD`, so a merge starts from it: a gold span nobody else marked
    is a group of its own that keeps the gold by default.
    """
    by_name = _annotated(sets)
    if current_gold is not None:
        by_name[CURRENT_GOLD] = _sorted([_checked(s) for s in current_gold])
    tagged = sorted(((s, name) for name, spans in by_name.items() for s in spans), key=lambda t: (t[0].start, t[0].end))
    clusters: list[list[tuple[Span, str]]] = []
    reach = -1
    for span, name in tagged:
        if clusters and span.start < reach:
            clusters[-1].append((span, name))
            reach = max(reach, span.end)
        else:
            clusters.append([(span, name)])
            reach = span.end
    return [_group(cluster, list(by_name)) for cluster in clusters]


def _people(spans: Mapping[str, tuple[Span, ...]]) -> dict[str, tuple[Span, ...]]:
    """The annotators' versions of a group, without the current gold (which is no vote)."""
    return {name: v for name, v in spans.items() if name != CURRENT_GOLD}


def _group(cluster: list[tuple[Span, str]], names: list[str]) -> SpanGroup:
    spans = {name: tuple(_sorted([s for s, n in cluster if n == name])) for name in names}
    versions = {_version(v) for v in (_people(spans) or spans).values()}
    start = min(s.start for s, _ in cluster)
    end = max(s.end for s, _ in cluster)
    return SpanGroup(start, end, spans, agree=len(versions) == 1)


def _majority_version(group: SpanGroup) -> str | None:
    """An annotator whose version a strict majority holds exactly, else None."""
    counts = Counter(_version(v) for v in group.spans.values())
    best, votes = counts.most_common(1)[0]
    if votes * 2 <= len(group.spans):
        return None
    return next(name for name, v in group.spans.items() if _version(v) == best)


def _group_label(spans: tuple[Span, ...]) -> str:
    labels = {s.label for s in spans}
    return NO_SPAN if not labels else labels.pop() if len(labels) == 1 else "mixed"


def default_pick(group: SpanGroup) -> str:
    """The preselected choice for a review row.

    Where the current gold marks the region and no annotator marks anything there, the
    current gold (a merge never drops gold by default). Otherwise, among the annotators:
    the version a strict majority holds exactly ("none" when that majority marked nothing
    here); else the first annotator of the strict-majority label (again "none" if that label
    is "no span"); else the first annotator.
    """
    people = _people(group.spans)
    if group.spans.get(CURRENT_GOLD) and not any(people.values()):
        return CURRENT_GOLD
    group = replace(group, spans=people)
    exact = _majority_version(group)
    if exact is not None:
        return exact if group.spans[exact] else NO_SPAN
    labels = {name: _group_label(v) for name, v in group.spans.items()}
    label, votes = Counter(labels.values()).most_common(1)[0]
    if votes * 2 > len(labels) and label != "mixed":
        return NO_SPAN if label == NO_SPAN else next(n for n, lab in labels.items() if lab == label)
    return next(iter(group.spans))


def removed_spans(before: Sequence[Span], after: Sequence[Span]) -> list[Span]:
    """Spans of `before` that `after` no longer holds with the same range and label: what a
    save would take away (a changed label or range counts as removed)."""
    kept = {(s.start, s.end, canonical_label(s.label)) for s in after}
    return [s for s in _sorted(before) if (s.start, s.end, canonical_label(s.label)) not in kept]


def merge_groups(groups: Sequence[SpanGroup], picks: Mapping[int, str] | None = None) -> list[Span]:
    """Build the gold set: each group contributes the picked annotator's spans.

    `picks[i]` names an annotator of group i, or "none" for no gold span; groups without
    a pick use `default_pick`.
    """
    picks = dict(picks or {})
    unknown = [i for i in picks if not 0 <= i < len(groups)]
    if unknown:
        raise UserError(f"no review group number {unknown[0]} (there are {len(groups)})")
    gold: list[Span] = []
    for i, group in enumerate(groups):
        pick = picks.get(i) or default_pick(group)
        if pick == NO_SPAN:
            continue
        if pick not in group.spans:
            raise UserError(f"group {i}: '{pick}' is not one of the annotators ({', '.join(group.spans)})")
        gold.extend(group.spans[pick])
    return normalise_spans(gold)


def majority_gold(sets: Mapping[str, Sequence[Span] | None]) -> list[Span]:
    """Gold spans when no reviewer has merged yet.

    Rule: a group's spans become gold when a strict majority of the annotators who
    annotated the generation (sets not None) hold exactly the same spans and labels
    there; groups without such a majority contribute nothing.
    """
    gold: list[Span] = []
    for group in diff_sets(sets):
        holder = _majority_version(group)
        if holder is not None:
            gold.extend(group.spans[holder])
    return normalise_spans(gold)
