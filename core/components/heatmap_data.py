"""What the token heatmap sends to the browser and reads back from it (pure; no Streamlit).

`TokenView` (a TokenTrace as the browser's columns), the labels and the colour scale (sent
in every payload as `style`: the JS and CSS hold no copy), `heatmap_payload` (the exact dict
the browser gets: parallel arrays, code points), the edit-mode payload and `saved_spans`
(what the editor sends back, validated). `core.components.heatmap` re-exports all public
names. Python twins of what the JS computes (colours, outcomes, selections) exist only for
the parity tests, in tests/support/heatmap_reference.py.

Units: spans are `{start, end, label}` in Unicode code points of the NFC answer. In view
mode they become per-token labels here, so the browser never sees a character offset;
edit mode sends per-token code-point offsets, and the JS converts a DOM selection (UTF-16
units) to code points before anything else sees it.

Colour scale (`SCALE_STOPS`): piecewise-linear in sRGB between 0 -> #ffffff, 0.25 ->
#ffeda0, 0.5 -> #feb24c, 0.75 -> #f03b28, 1 -> #a50026; every channel is non-increasing so
lightness falls monotonically with the score. Scores are clamped to [0, 1]; an unknown
score (None, NaN) is light grey #e0e0e0. Text turns white from score 0.8 up. Underlines and
overlines change colour with the score (tones from LINE_TONE_FROM) so they keep a 3:1 contrast.

Outcome styling (only when gold spans are given): the prediction is "token overlaps a
predicted span" when `predicted_spans` is given, else "score >= threshold". Against the
gold value (Not Supported / Insufficient Information = 1, Supported or outside every span
= 0, N/A = ignored): TP = solid dark outline, FP = dashed blue, FN = dotted red; TN none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from core.base.errors import UserError
from core.base.numbers import finite_or_none
from core.base.types import (
    INSUFFICIENT_INFORMATION,
    LABEL_VALUES,
    LABEL_WORDS,
    NOT_APPLICABLE,
    NOT_SUPPORTED,
    SUPPORTED,
    Span,
    TokenTrace,
)
from core.text.editing import normalise_spans
from core.text.tokens import canonical_label

PAYLOAD_VERSION = 1
MODES = ("view", "edit")

# (position, (r, g, b)); every channel non-increasing => lightness monotonic in score.
SCALE_STOPS: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.0, (255, 255, 255)),
    (0.25, (255, 237, 160)),
    (0.5, (254, 178, 76)),
    (0.75, (240, 59, 40)),
    (1.0, (165, 0, 38)),
)
UNKNOWN_COLOR = "#e0e0e0"
DARK_TEXT = "#000000"
LIGHT_TEXT = "#ffffff"
LIGHT_TEXT_FROM = 0.8  # score at and above which text is white

# Gold underline colour per label (the UI words in brackets).
GOLD_COLOURS: dict[str, str] = {
    NOT_SUPPORTED: "#c2185b",  # hallucinated
    INSUFFICIENT_INFORMATION: "#7b1fa2",  # unverifiable
    SUPPORTED: "#2a7230",  # supported
    NOT_APPLICABLE: "#666666",  # ignore
}
# Label underlines and suggestion overlines keep a WCAG contrast of at least 3:1 with the
# token under them. The scale's lightness falls with the score, so one palette per band of
# scores (a "tone") does it: tone 0 below 0.5 (the label colours), tone 1 from 0.5 (dark
# lines on orange), tone 2 from 0.75 (light lines on red). Unknown scores are tone 0.
LINE_TONE_FROM = (0.5, 0.75)
SUGGESTION_LINE = "suggestion"  # the key of the suggestion overline in LINE_COLOURS
LINE_COLOURS: tuple[dict[str, str], ...] = (
    {**GOLD_COLOURS, SUGGESTION_LINE: "#1565c0"},
    {
        NOT_SUPPORTED: "#6a0036",
        INSUFFICIENT_INFORMATION: "#3f0f80",
        SUPPORTED: "#0b3d10",
        NOT_APPLICABLE: "#333333",
        SUGGESTION_LINE: "#0b2e6b",
    },
    {
        NOT_SUPPORTED: "#ffdeed",
        INSUFFICIENT_INFORMATION: "#efe3ff",
        SUPPORTED: "#c8f5c8",
        NOT_APPLICABLE: "#e8e8e8",
        SUGGESTION_LINE: "#d6ebff",
    },
)
# Which label a token shows when it overlaps several spans: LABEL_VALUES' order, most severe first.
_LABEL_PRIORITY = tuple(LABEL_VALUES)
# The key of each label in CSS class names (heatmap.css: .g-ns underline, .t-ns their span).
LABEL_KEYS: dict[str, str] = {NOT_SUPPORTED: "ns", INSUFFICIENT_INFORMATION: "ii", SUPPORTED: "s", NOT_APPLICABLE: "na"}

# --- data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenView:
    """What the heatmap shows: a `TokenTrace` (the one per-token record), read as the browser's
    parallel columns (positions in code points; an unknown score, log-prob or entropy is None)."""

    trace: TokenTrace

    def __post_init__(self) -> None:
        t = self.trace
        n = len(t.texts)
        for name in ("offsets", "token_ids", "logprobs", "entropies", *(("scores",) if t.scores is not None else ())):
            if len(getattr(t, name)) != n:
                raise ValueError(f"TokenView: the trace's {name} has {len(getattr(t, name))} items, texts has {n}")

    def __len__(self) -> int:
        return len(self.trace.texts)

    @property
    def texts(self) -> list[str]:
        return self.trace.texts

    @cached_property
    def starts(self) -> list[int]:
        return [int(s) for s, _ in self.trace.offsets]

    @cached_property
    def ends(self) -> list[int]:
        return [int(e) for _, e in self.trace.offsets]

    @property
    def ids(self) -> list[int]:
        return self.trace.token_ids

    @cached_property
    def scores(self) -> list[float | None]:
        scores = self.trace.scores
        return list(scores) if scores is not None else [None] * len(self)

    @property
    def logprobs(self) -> list[float | None]:
        return self.trace.logprobs  # type: ignore[return-value]  # a view from plain lists may hold None

    @property
    def entropies(self) -> list[float | None]:
        return self.trace.entropies  # type: ignore[return-value]

    @classmethod
    def from_trace(cls, trace: TokenTrace, scores: Sequence[float | None] | None = None) -> TokenView:
        """From a `TokenTrace`; `scores` overrides `trace.scores` (None = not scored yet)."""
        return cls(trace if scores is None else trace.with_scores(scores))  # type: ignore[arg-type]

    @classmethod
    def from_lists(
        cls,
        texts: Sequence[str],
        *,
        starts: Sequence[int] | None = None,
        ends: Sequence[int] | None = None,
        ids: Sequence[int] | None = None,
        scores: Sequence[float | None] | None = None,
        logprobs: Sequence[float | None] | None = None,
        entropies: Sequence[float | None] | None = None,
    ) -> TokenView:
        """From plain lists; missing offsets are the running code-point lengths of `texts`
        (so "" tokens -- pieces of a split multi-byte character -- are zero-width)."""
        n = len(texts)
        if starts is None or ends is None:
            pos, s_list, e_list = 0, [], []
            for t in texts:
                s_list.append(pos)
                pos += len(t)
                e_list.append(pos)
            starts = s_list if starts is None else starts
            ends = e_list if ends is None else ends
        if len(starts) != n or len(ends) != n:
            raise ValueError(f"TokenView: {len(starts)} starts and {len(ends)} ends for {n} texts")
        # A view's trace may hold None where a number is missing (the accessors above say so).
        nothing: list[Any] = [None] * n
        given_logprobs: list[Any] = list(logprobs) if logprobs is not None else list(nothing)
        given_entropies: list[Any] = list(entropies) if entropies is not None else list(nothing)
        given_scores: list[Any] | None = list(scores) if scores is not None else None
        trace = TokenTrace(
            token_ids=[int(i) for i in ids] if ids is not None else list(range(n)),
            texts=[str(t) for t in texts],
            offsets=[(int(s), int(e)) for s, e in zip(starts, ends)],
            logprobs=given_logprobs,
            entropies=given_entropies,
            scores=given_scores,
        )
        return cls(trace)


# --- labels and colours, as the browser receives them ----------------------------------------


def style_payload() -> dict[str, Any]:
    """The labels and colours of every payload (`style`): the browser's only source for them.

    Labels come most severe first (their rank in the editor), each with its UI word, training
    value and the key of its CSS classes (`g-<key>` gold underline, `t-<key>` their span);
    `scale` is SCALE_STOPS; `lines` the line palettes per tone (LINE_COLOURS), which the JS
    hands to heatmap.css as variables."""
    return {
        "labels": [
            {
                "name": label,
                "word": LABEL_WORDS[label],
                "value": LABEL_VALUES[label],
                "key": LABEL_KEYS[label],
                "color": GOLD_COLOURS[label],
            }
            for label in _LABEL_PRIORITY
        ],
        "scale": [[p, list(c)] for p, c in SCALE_STOPS],
        "unknown": UNKNOWN_COLOR,
        "dark_text": DARK_TEXT,
        "light_text": LIGHT_TEXT,
        "light_text_from": LIGHT_TEXT_FROM,
        "line_tone_from": list(LINE_TONE_FROM),
        "lines": [dict(p) for p in LINE_COLOURS],
        "suggestion": SUGGESTION_LINE,
    }


# --- spans -> per-token labels ----------------------------------------------------------


def _span_fields(span: Span | Mapping[str, Any], where: str) -> tuple[int, int, str]:
    start: Any  # whatever the caller passed, checked below
    end: Any
    if isinstance(span, Span):
        start, end, label = span.start, span.end, span.label
    elif isinstance(span, Mapping):
        start, end, label = span.get("start"), span.get("end"), span.get("label", "N/A")
    else:
        raise UserError(f"{where} must be a {{start, end, label}} object")
    for name, v in (("start", start), ("end", end)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise UserError(f"{where}: {name} must be an integer (code points)")
    if not 0 <= start <= end:
        raise UserError(f"{where}: needs 0 <= start <= end, got [{start}, {end})")
    return start, end, canonical_label("N/A" if label is None else label)


def token_gold_labels(
    starts: Sequence[int], ends: Sequence[int], spans: Iterable[Span | Mapping[str, Any]]
) -> list[str | None]:
    """Per token, the label of a span it overlaps (code points), else None.

    Overlap is `start < span.end and span.start < end` for tokens of non-zero width (the
    rule of `core.text.tokens.token_labels`); zero-width tokens never get a label. A token
    overlapping several spans shows the most severe label (Not Supported first).
    """
    parsed = [_span_fields(sp, f"span {k + 1}") for k, sp in enumerate(spans)]
    n = len(starts)
    if not parsed or n == 0:
        return [None] * n
    s = np.asarray(starts, dtype=np.int64)
    e = np.asarray(ends, dtype=np.int64)
    wide = s < e
    rank = np.full(n, len(_LABEL_PRIORITY), dtype=np.int8)  # lower = more severe
    for a, b, label in parsed:
        r = _LABEL_PRIORITY.index(label)
        hit = wide & (s < b) & (a < e)
        rank[hit & (rank > r)] = r
    return [_LABEL_PRIORITY[r] if r < len(_LABEL_PRIORITY) else None for r in rank.tolist()]


def token_predictions(
    starts: Sequence[int], ends: Sequence[int], spans: Iterable[Span | Mapping[str, Any]]
) -> list[int]:
    """Per token 1 if it overlaps a predicted span whose label is not 'Supported'/'N/A'."""
    labels = token_gold_labels(starts, ends, spans)
    return [1 if lab is not None and LABEL_VALUES[lab] == 1 else 0 for lab in labels]


# --- payload -------------------------------------------------------------------------------


def _rounded(values: Sequence[Any], digits: int) -> list[float | None]:
    out: list[float | None] = []
    for v in values:
        f = finite_or_none(v)
        out.append(None if f is None else round(f, digits))
    return out


def heatmap_payload(
    tokens: TokenView,
    *,
    threshold: float = 0.5,
    gold_spans: Sequence[Span | Mapping[str, Any]] | None = None,
    predicted_spans: Sequence[Span | Mapping[str, Any]] | None = None,
    mode: str = "view",
    focus: int | None = None,
    height: int | None = None,
    doc_id: str | None = None,
    produced_at: float | Sequence[float] | None = None,
    spans: Sequence[Span | Mapping[str, Any]] | None = None,
    suggestions: Sequence[Any] | None = None,
    base_version: int = 0,
    draft_key: str | None = None,
    conflict: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Exactly the JSON-able dict the browser receives: compact parallel arrays.

    Scores are rounded to 4 decimals, log-probabilities and entropies to 3; non-finite
    values become null (JSON has no NaN/inf). `gold` is a per-token label or null and is
    itself null when no gold spans were given (then no TP/FP/FN styling); `pred` is a
    per-token 0/1 from `predicted_spans`, or null (then the threshold decides).
    `produced_at` (epoch ms of the newest token, or one per token) is only for latency
    measurement and is recorded by the browser on paint.

    Edit mode (`mode="edit"`) adds `edit`: per-token code-point `starts`/`ends`, the
    annotator's `spans` (validated, labels canonical, made consistent by
    `core.text.editing.normalise_spans`), probe `suggestions` ({start, end, score}, sorted),
    `base_version`, `draft_key` and `conflict` (see `edit_payload`). The edit-only
    arguments are rejected in view mode.
    """
    if mode not in MODES:
        raise UserError(f"unknown heatmap mode {mode!r} (expected one of: {', '.join(MODES)})")
    thr = finite_or_none(threshold)
    if thr is None or not 0.0 <= thr <= 1.0:
        raise UserError(f"threshold must be a number in [0, 1], got {threshold!r}")
    n = len(tokens)
    # A focus past the end is kept: while streaming, the browser applies it once that
    # token has arrived.
    if focus is not None and (isinstance(focus, bool) or not isinstance(focus, int) or focus < 0):
        raise UserError(f"focus must be a token index >= 0, got {focus!r}")
    if height is not None and (isinstance(height, bool) or not isinstance(height, int) or height < 40):
        raise UserError(f"height must be an integer number of pixels >= 40, got {height!r}")
    gold = None if gold_spans is None else token_gold_labels(tokens.starts, tokens.ends, gold_spans)
    pred = None if predicted_spans is None else token_predictions(tokens.starts, tokens.ends, predicted_spans)
    produced: float | list[float] | None
    if produced_at is None or isinstance(produced_at, (int, float)):
        produced = produced_at
    else:
        produced = [float(x) for x in produced_at]
        if len(produced) != n:
            raise ValueError(f"produced_at has {len(produced)} items for {n} tokens")
    if mode == "view":
        given = [
            name
            for name, v in (
                ("spans", spans),
                ("suggestions", suggestions),
                ("draft_key", draft_key),
                ("conflict", conflict),
            )
            if v is not None
        ]
        if given or base_version != 0:
            raise UserError(f"{', '.join(given) or 'base_version'} only apply in edit mode (mode='edit')")
        edit = None
    else:
        edit = edit_payload(
            tokens,
            spans=spans or [],
            suggestions=suggestions or [],
            base_version=base_version,
            draft_key=draft_key if draft_key is not None else ("" if doc_id is None else str(doc_id)),
            conflict=conflict,
        )
    return {
        "v": PAYLOAD_VERSION,
        "doc_id": "" if doc_id is None else str(doc_id),
        "mode": mode,
        "threshold": thr,
        "n": n,
        "texts": list(tokens.texts),
        "ids": [int(i) for i in tokens.ids],
        "scores": _rounded(tokens.scores, 4),
        "logprobs": _rounded(tokens.logprobs, 3),
        "entropies": _rounded(tokens.entropies, 3),
        "gold": gold,
        "pred": pred,
        "focus": focus,
        "height": height,
        "produced_at": produced,
        "edit": edit,
        "style": style_payload(),
    }


# --- edit mode ------------------------------------------------------------------------------


def answer_text(tokens: TokenView) -> str:
    """The answer the editor works on: the token texts joined (they cover it exactly)."""
    return "".join(tokens.texts)


def _int_field(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{what} must be an integer")
    return value


def _edit_span(span: Span | Mapping[str, Any], where: str, length: int) -> Span:
    start, end, label = _span_fields(span, where)
    note = span.note if isinstance(span, Span) else span.get("note")
    if note is not None and not isinstance(note, str):
        raise UserError(f"{where}: note must be text")
    if start == end:
        raise UserError(f"{where} is empty ([{start}, {end}))")
    if end > length:
        raise UserError(f"{where} ends at {end}, past the end of the answer ({length} code points)")
    return Span(start, end, label, (note or "").strip() or None)


def _span_dict(span: Span) -> dict[str, Any]:
    return {"start": span.start, "end": span.end, "label": span.label, "note": span.note}


def _edit_spans(spans: Sequence[Span | Mapping[str, Any]], what: str, text: str) -> list[dict[str, Any]]:
    if isinstance(spans, (str, bytes, Mapping)) or not isinstance(spans, Sequence):
        raise UserError(f"{what} must be a list of {{start, end, label}} objects")
    parsed = [_edit_span(sp, f"{what} {k + 1}", len(text)) for k, sp in enumerate(spans)]
    return [_span_dict(sp) for sp in normalise_spans(parsed, text)]


MAX_SUGGESTION_NOTE = 2000


def _suggestion_extras(sug: Any, where: str) -> dict[str, Any]:
    """A judge's suggestion's own label, note and source (shown as text only, never markup)."""
    get = sug.get if isinstance(sug, Mapping) else (lambda name: getattr(sug, name, None))
    out: dict[str, Any] = {}
    label = get("label")
    if label is not None:
        out["label"] = canonical_label(label)
    for name, limit in (("note", MAX_SUGGESTION_NOTE), ("source", 100)):
        value = get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise UserError(f"{where}: {name} must be text")
        if value:
            out[name] = value[:limit]
    return out


def _suggestion_fields(sug: Any, where: str, length: int) -> dict[str, Any]:
    if isinstance(sug, Mapping):
        start, end, score = sug.get("start"), sug.get("end"), sug.get("score")
    elif all(hasattr(sug, name) for name in ("start", "end", "score")):  # core.text.editing.Suggestion
        start, end, score = sug.start, sug.end, sug.score
    else:
        raise UserError(f"{where} must be a {{start, end, score}} object")
    start, end = _int_field(start, f"{where}: start"), _int_field(end, f"{where}: end")
    if not 0 <= start < end <= length:
        raise UserError(f"{where}: needs 0 <= start < end <= {length}, got [{start}, {end})")
    sc = finite_or_none(score)
    if sc is None:
        raise UserError(f"{where}: score must be a number")
    return {"start": start, "end": end, "score": round(sc, 4), **_suggestion_extras(sug, where)}


def edit_payload(
    tokens: TokenView,
    *,
    spans: Sequence[Span | Mapping[str, Any]] = (),
    suggestions: Sequence[Any] = (),
    base_version: int = 0,
    draft_key: str = "",
    conflict: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The `edit` part of the payload (all positions code points of the NFC answer).

    `starts`/`ends` are the tokens' offsets (a token-snapped selection becomes
    [min start, max end) of its tokens of non-zero width, then trimmed of whitespace);
    `spans` are validated and normalised; `suggestions` are sorted by position;
    `conflict` is `{"theirs": [spans], "their_version": int, "saved_by": str}` or None
    (other keys are ignored).
    """
    text = answer_text(tokens)
    _int_field(base_version, "base_version")
    if not isinstance(draft_key, str):
        raise UserError("draft_key must be text")
    if isinstance(suggestions, (str, bytes, Mapping)) or not isinstance(suggestions, Sequence):
        raise UserError("suggestions must be a list of {start, end, score} objects")
    sugs = [_suggestion_fields(sg, f"suggestion {k + 1}", len(text)) for k, sg in enumerate(suggestions)]
    sugs.sort(key=lambda d: (d["start"], d["end"], -d["score"]))
    conf = None
    if conflict is not None:
        if not isinstance(conflict, Mapping):
            raise UserError("conflict must be a {theirs, their_version, saved_by} object")
        saved_by = conflict.get("saved_by")
        conf = {
            "theirs": _edit_spans(conflict.get("theirs") or [], "their span", text),
            "their_version": _int_field(conflict.get("their_version"), "conflict.their_version"),
            "saved_by": "" if saved_by is None else str(saved_by),
        }
    return {
        "starts": [int(x) for x in tokens.starts],
        "ends": [int(x) for x in tokens.ends],
        "spans": _edit_spans(spans, "span", text),
        "suggestions": sugs,
        "base_version": base_version,
        "draft_key": draft_key,
        "conflict": conf,
    }


def saved_spans(value: Any, tokens: TokenView) -> list[Span]:
    """The spans of a `save` (or `draft`) value from the editor, validated: a list of
    `Span` in code points of the answer, normalised. Bad input is one `UserError`."""
    if not isinstance(value, Mapping) or not isinstance(value.get("spans"), list):
        raise UserError("the editor sent no span list")
    text = answer_text(tokens)
    parsed = []
    for k, sp in enumerate(value["spans"]):
        if not isinstance(sp, Mapping):  # a browser sends plain objects, never Span
            raise UserError(f"saved span {k + 1} must be a {{start, end, label}} object")
        parsed.append(_edit_span(sp, f"saved span {k + 1}", len(text)))
    return normalise_spans(parsed, text)
