"""Python twins of what the heatmap's JS computes, for the parity tests only.

The browser gets the labels and the colour scale in its payload (`style_payload`) and
computes colours, outcomes and selections itself; these functions compute the same in
Python from the same definitions (core/components/heatmap_data.py), so the tests can check
the JS (tests/support/js_eval.py, tests/e2e) against them. Nothing in the product uses them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from core.base.errors import UserError
from core.base.numbers import finite_or_none
from core.base.types import LABEL_VALUES
from core.components.heatmap_data import (
    DARK_TEXT,
    GOLD_COLOURS,
    LIGHT_TEXT,
    LIGHT_TEXT_FROM,
    LINE_COLOURS,
    LINE_TONE_FROM,
    SCALE_STOPS,
    UNKNOWN_COLOR,
    TokenView,
    answer_text,
    token_gold_labels,
)
from core.text.editing import selection_to_span, utf16_selection_to_span


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))  # JS: Math.floor(x + 0.5) -- not Python's banker's round


def score_rgb(score: float | None) -> tuple[int, int, int] | None:
    """The scale's (r, g, b) for a score (clamped to [0, 1]); None for an unknown score."""
    s = finite_or_none(score)
    if s is None:
        return None
    s = min(1.0, max(0.0, s))
    for (p0, c0), (p1, c1) in zip(SCALE_STOPS, SCALE_STOPS[1:]):
        if s <= p1:
            t = (s - p0) / (p1 - p0)
            return tuple(_round_half_up(a + (b - a) * t) for a, b in zip(c0, c1))  # type: ignore[return-value]
    return SCALE_STOPS[-1][1]


def score_color(score: float | None) -> str:
    """Background colour of a token with this probe score, as '#rrggbb' (mirrors the JS)."""
    rgb = score_rgb(score)
    if rgb is None:
        return UNKNOWN_COLOR
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def text_color(score: float | None) -> str:
    """Text colour that stays readable on `score_color(score)`."""
    s = finite_or_none(score)
    return LIGHT_TEXT if s is not None and s >= LIGHT_TEXT_FROM else DARK_TEXT


def line_tone(score: float | None) -> int:
    """The palette (index into LINE_COLOURS) of the lines drawn on a token with this score."""
    s = finite_or_none(score)
    if s is None:
        return 0
    return sum(1 for start in LINE_TONE_FROM if s >= start)


def line_colour(label: str, score: float | None) -> str:
    """The underline colour of `label` (or SUGGESTION_LINE: the overline) on a token with this score."""
    return LINE_COLOURS[line_tone(score)][label]


def legend(threshold: float = 0.5) -> dict[str, Any]:
    """What the legend shows (the JS draws the same from the same constants)."""
    return {
        "scale": [{"at": p, "color": "#{:02x}{:02x}{:02x}".format(*c)} for p, c in SCALE_STOPS],
        "unknown": UNKNOWN_COLOR,
        "threshold": float(threshold),
        "gold": dict(GOLD_COLOURS),
        "outcomes": {
            "TP": "solid dark outline: flagged and gold hallucinated",
            "FP": "dashed blue outline: flagged but gold supported / outside gold spans",
            "FN": "dotted red outline: not flagged but gold hallucinated",
        },
    }


def token_outcomes(payload: Mapping[str, Any]) -> list[str | None]:
    """Per token 'TP' / 'FP' / 'FN' / None, exactly as the JS styles them (for tests)."""
    gold, pred, scores, texts = payload["gold"], payload["pred"], payload["scores"], payload["texts"]
    if gold is None:
        return [None] * len(texts)
    out: list[str | None] = []
    for i, text in enumerate(texts):
        g = 0 if gold[i] is None else LABEL_VALUES[gold[i]]
        if pred is not None:
            p: int | None = pred[i]
        else:
            p = None if scores[i] is None else int(scores[i] >= payload["threshold"])
        if text == "" or g is None or p is None:
            out.append(None)
        elif p and g:
            out.append("TP")
        elif p:
            out.append("FP")
        elif g:
            out.append("FN")
        else:
            out.append(None)
    return out


def edit_token_labels(payload: Mapping[str, Any], spans: Sequence[Mapping[str, Any]] | None = None) -> list[str | None]:
    """Per token, the label the editor draws for `spans` (default: the payload's spans).

    The rule of `token_gold_labels` (and of the training labels): a token of non-zero
    width overlapping a span shows its label, the most severe when several.
    """
    edit = payload["edit"]
    return token_gold_labels(edit["starts"], edit["ends"], edit["spans"] if spans is None else spans)


def visible_suggestions(payload: Mapping[str, Any], spans: Sequence[Mapping[str, Any]] | None = None) -> list[dict]:
    """The suggestions the editor shows: those overlapping no span (rejections aside)."""
    edit = payload["edit"]
    current = edit["spans"] if spans is None else spans
    return [
        sg
        for sg in edit["suggestions"]
        if not any(sg["start"] < sp["end"] and sp["start"] < sg["end"] for sp in current)
    ]


def token_selection_to_span(tokens: TokenView, first: int, last: int) -> tuple[int, int]:
    """What the JS makes of a token-snapped selection (drag or shift+click) from token
    `first` to token `last` (inclusive, either order): `core.text.editing.selection_to_span`."""
    offsets = list(zip(tokens.starts, tokens.ends))
    return selection_to_span(offsets, first, last, text=answer_text(tokens))


def dom_selection_to_span(
    texts: Sequence[str], start_token: int, start_u16: int, end_token: int, end_u16: int
) -> tuple[int, int]:
    """What the JS makes of an Alt (character-precision) selection.

    A DOM Selection reports positions as (text node of token i, offset in UTF-16 units).
    Positions are made global in UTF-16 units and converted with
    `core.text.editing.utf16_selection_to_span` (astral characters count 1; a boundary inside a
    surrogate pair widens the span to the whole character). Either order.
    """
    n = len(texts)
    before = [0]
    for t in texts:
        before.append(before[-1] + len(t.encode("utf-16-le", "surrogatepass")) // 2)
    globals_ = []
    for tok, off in ((start_token, start_u16), (end_token, end_u16)):
        if not 0 <= tok < n:
            raise UserError(f"token {tok} is outside the {n} tokens")
        if not 0 <= off <= before[tok + 1] - before[tok]:
            raise UserError(f"offset {off} is outside token {tok}")
        globals_.append(before[tok] + off)
    return utf16_selection_to_span("".join(texts), *globals_)
