"""The token heatmap's Python side: payload, per-token gold labels, colour scale.

No browser here (tests/e2e/test_heatmap_browser.py drives Chromium); these check what is
sent and that the JS constants mirror the Python ones.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest

from core.base.errors import UserError
from core.base.types import IGNORE, LABEL_VALUES, LABEL_WORDS, Span, TokenTrace
from core.components import heatmap as hm
from core.components import heatmap_data
from core.components.heatmap import (
    GOLD_COLOURS,
    SCALE_STOPS,
    UNKNOWN_COLOR,
    TokenView,
    heatmap_payload,
    saved_spans,
    token_gold_labels,
)
from core.text.editing import (
    Suggestion,
    accept_suggestions,
    add_span,
    delete_span,
    normalise_spans,
    relabel,
    selection_to_span,
    set_note,
    utf16_selection_to_span,
)
from core.text.tokens import completion_offsets, token_labels
from tests.support.heatmap_reference import (
    dom_selection_to_span,
    edit_token_labels,
    legend,
    score_color,
    text_color,
    token_outcomes,
    token_selection_to_span,
    visible_suggestions,
)
from tests.support.js_eval import NODE, js_runner, node_json

JS_DIR = hm.JS_DIR
JS = {name: (JS_DIR / name).read_text(encoding="utf-8") for name in hm.JS_FILES}
ALL_JS = hm.component_js(strip=False)
CSS = (Path(hm.__file__).parent / "heatmap.css").read_text(encoding="utf-8")


def _luminance(hex_color: str) -> float:
    r, g, b = (int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5))
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


# --- TokenView ---------------------------------------------------------------------------


def test_from_lists_offsets_are_code_points_and_empty_pieces_are_zero_width():
    texts = ["Hi", " 👋🏽", "", "", " 東京", "\n"]
    view = TokenView.from_lists(texts)
    assert view.starts == [0, 2, 5, 5, 5, 8]
    assert view.ends == [2, 5, 5, 5, 8, 9]
    assert view.ids == list(range(6))
    assert view.scores == [None] * 6 and len(view) == 6


def test_from_lists_rejects_columns_of_other_lengths():
    with pytest.raises(ValueError, match="scores"):
        TokenView.from_lists(["a", "b"], scores=[0.1])


def test_from_trace_keeps_columns_and_marks_unscored():
    trace = TokenTrace([5, 6], ["a", " b"], [(0, 1), (1, 3)], [-0.1, -2.0], [0.5, 1.5])
    view = TokenView.from_trace(trace)
    assert (view.ids, view.starts, view.ends, view.scores) == ([5, 6], [0, 1], [1, 3], [None, None])
    scored = TokenView.from_trace(trace, scores=[0.2, 0.9])
    assert scored.scores == [0.2, 0.9] and scored.logprobs == [-0.1, -2.0]


# --- gold spans -> per-token labels -------------------------------------------------------------


def test_gold_labels_overlap_rule_with_emoji_and_cjk():
    # "Ich 👍🏽 mag 東京!" split like a byte-level tokenizer: the emoji's pieces share offsets.
    texts = ["Ich", " 👍", "🏽", "", " mag", " 東", "京", "!"]
    view = TokenView.from_lists(texts)
    text = "".join(texts)
    assert text == "Ich 👍🏽 mag 東京!"
    tokyo = text.index("東京")
    spans = [
        {"start": tokyo, "end": tokyo + 2, "label": "Not Supported"},
        {"start": text.index("👍"), "end": text.index("👍") + 2, "label": "Supported"},
        {"start": 0, "end": 1, "label": "hallucinated"},  # UI alias, partial overlap of "Ich"
    ]
    gold = token_gold_labels(view.starts, view.ends, spans)
    assert gold == ["Not Supported", "Supported", "Supported", None, None, "Not Supported", "Not Supported", None]


def test_gold_labels_most_severe_wins_and_span_objects_work():
    view = TokenView.from_lists(["aa", "bb", "cc"])
    spans = [Span(0, 4, "Supported"), Span(2, 3, "Insufficient Information"), Span(3, 6, "N/A")]
    assert token_gold_labels(view.starts, view.ends, spans) == [
        "Supported",
        "Insufficient Information",
        "N/A",
    ]


def test_gold_labels_agree_with_training_labels(tiny_tokenizer):
    """The colour the browser shows and the label the probe trains on come from one rule."""
    text = "Marie Curie won the Nobel Prize in 1903 🦄 and 東京は日本の首都です。\n\nDone."
    ids, offsets = completion_offsets(tiny_tokenizer, text)
    view = TokenView.from_lists(
        [text[s:e] for s, e in offsets], starts=[s for s, _ in offsets], ends=[e for _, e in offsets], ids=ids
    )
    spans = [
        Span(text.index("1903"), text.index("1903") + 4, "Not Supported"),
        Span(text.index("Marie"), text.index("Curie") + 5, "Supported"),
        Span(text.index("🦄"), text.index("🦄") + 1, "N/A"),
        Span(text.index("東京"), text.index("東京") + 2, "Insufficient Information"),
    ]
    gold = token_gold_labels(view.starts, view.ends, spans)
    expected = token_labels(offsets, spans).labels.tolist()
    shown = []
    for (s, e), label in zip(offsets, gold):
        if s >= e:
            shown.append(IGNORE)
        elif label is None:
            shown.append(0)
        else:
            value = LABEL_VALUES[label]
            shown.append(IGNORE if value is None else value)
    assert shown == expected
    # byte-level pieces of one character share its offsets: they take its label too
    assert len(set(offsets)) < len(offsets), "the emoji should be split into byte pieces"


@pytest.mark.parametrize(
    "span, message",
    [
        ({"start": 3, "end": 1, "label": "Supported"}, "start <= end"),
        ({"start": -1, "end": 1, "label": "Supported"}, "start <= end"),
        ({"start": "0", "end": 1, "label": "Supported"}, "integer"),
        ({"start": 0, "end": 1, "label": "maybe"}, "unknown label"),
        ("0-1", "object"),
    ],
)
def test_bad_spans_are_one_clear_error(span, message):
    with pytest.raises(UserError, match=message):
        token_gold_labels([0], [1], [span])


# --- colour scale -------------------------------------------------------------------------------


def test_documented_scale_values():
    assert score_color(0.0) == "#ffffff"
    assert score_color(0.25) == "#ffeda0"
    assert score_color(0.5) == "#feb24c"
    assert score_color(0.75) == "#f03b28"
    assert score_color(1.0) == "#a50026"
    assert score_color(-3) == "#ffffff" and score_color(7) == "#a50026"  # clamped
    # halfway between 0.5 and 0.75: (254+240)/2=247, (178+59)/2=118.5 -> 119 (half up), 58
    assert score_color(0.625) == "#f7773a"


@pytest.mark.parametrize("unknown", [None, float("nan"), float("inf"), "x", True])
def test_unknown_scores_are_light_grey(unknown):
    assert score_color(unknown) == UNKNOWN_COLOR == "#e0e0e0"
    assert text_color(unknown) == "#000000"


def test_scale_gets_darker_monotonically():
    grid = [i / 1000 for i in range(1001)]
    lum = [_luminance(score_color(s)) for s in grid]
    assert all(a >= b for a, b in zip(lum, lum[1:]))
    assert lum[0] > 0.99 and lum[-1] < 0.1
    for (_, c0), (_, c1) in zip(SCALE_STOPS, SCALE_STOPS[1:]):
        assert all(a >= b for a, b in zip(c0, c1)), "every channel non-increasing"
    assert _luminance(UNKNOWN_COLOR) < _luminance(score_color(0.0))  # grey differs from 0


def test_text_stays_readable():
    def contrast(a: str, b: str) -> float:
        la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
        return (la + 0.05) / (lb + 0.05)

    for s in [i / 1000 for i in range(1001)]:
        assert contrast(score_color(s), text_color(s)) >= 4.5, s  # WCAG AA for normal text
    assert text_color(0.79) == "#000000" and text_color(0.8) == "#ffffff"


def test_legend_describes_scale_gold_and_outcomes():
    leg = legend(0.3)
    assert leg["threshold"] == 0.3 and leg["unknown"] == UNKNOWN_COLOR
    assert [s["color"] for s in leg["scale"]] == [score_color(p) for p, _ in SCALE_STOPS]
    assert set(leg["gold"]) == set(LABEL_VALUES) and set(leg["outcomes"]) == {"TP", "FP", "FN"}


# --- the JS mirrors the Python --------------------------------------------------------------------


def test_the_payload_carries_the_one_definition_of_labels_and_colours():
    style = heatmap_payload(TokenView.from_lists(["a"]))["style"]
    assert style == hm.style_payload() and json.loads(json.dumps(style)) == style
    assert [(p, tuple(c)) for p, c in style["scale"]] == list(SCALE_STOPS)
    assert style["unknown"] == UNKNOWN_COLOR and style["light_text_from"] == hm.LIGHT_TEXT_FROM
    assert [lab["name"] for lab in style["labels"]] == list(LABEL_VALUES)  # most severe first
    for lab in style["labels"]:
        assert lab["color"] == GOLD_COLOURS[lab["name"]] and lab["value"] == LABEL_VALUES[lab["name"]]
        assert lab["word"] == LABEL_WORDS[lab["name"]] and f".g-{lab['key']}" in CSS and f".t-{lab['key']}" in CSS
    assert style["lines"] == [dict(p) for p in hm.LINE_COLOURS]


def test_js_and_css_hold_no_copy_of_labels_or_colours():
    """Label names and colours reach the browser only in the payload's style."""
    code = re.sub(r"//[^\n]*|/\*.*?\*/", "", ALL_JS, flags=re.S)
    css = re.sub(r"/\*.*?\*/", "", CSS, flags=re.S)
    for label in LABEL_VALUES:
        if label != "Supported":  # a word of ordinary sentences too
            assert label not in code, label
    for word in LABEL_WORDS.values():
        assert f'"{word}"' not in code, word
    colours = {UNKNOWN_COLOR, heatmap_data.DARK_TEXT, heatmap_data.LIGHT_TEXT, *GOLD_COLOURS.values()}
    colours |= {"#{:02x}{:02x}{:02x}".format(*c) for _, c in SCALE_STOPS}
    colours |= {c for palette in hm.LINE_COLOURS for c in palette.values()}
    for colour in colours:
        assert colour not in code.lower(), colour
        if colour not in ("#ffffff", "#1565c0"):  # white edges and the buttons' blue are not the scale's
            assert colour not in css.lower(), colour
    assert "Math.floor(c0[j] + (c1[j] - c0[j]) * t + 0.5)" in JS["colour.js"]  # same rounding as Python


def test_js_configured_from_the_payload_has_python_scale_and_labels(js_eval):
    got = js_eval("colour.js", "(P) => ({stops: P.STOPS, gold: P.GOLD, unknown: P.scoreColor(null)})", None)
    assert [(p, tuple(c)) for p, c in got["stops"]] == list(SCALE_STOPS)
    assert got["unknown"] == UNKNOWN_COLOR
    assert list(got["gold"]) == list(LABEL_VALUES)
    for label, g in got["gold"].items():
        assert g["color"] == GOLD_COLOURS[label] and g["word"] == LABEL_WORDS[label] and g["cls"] in CSS
    assert js_eval("spans.js", "(P) => P.LABELS", None) == list(heatmap_data._LABEL_PRIORITY)


def test_js_never_parses_model_text_as_html():
    code = re.sub(r"//[^\n]*", "", ALL_JS)  # comments may mention what is forbidden
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "createContextualFragment",
        "DOMParser",
        "eval(",
        "new Function",
    ):
        assert sink not in code, sink
    assert "textContent = d.texts[i]" in JS["view.js"]


# --- payload -----------------------------------------------------------------------------------


def test_payload_is_compact_parallel_arrays():
    view = TokenView.from_lists(
        ["The", " sky", " is", " green"],
        ids=[10, 11, 12, 13],
        scores=[0.012345, None, float("nan"), 0.98765],
        logprobs=[-0.12345, -float("inf"), -1, -2],
        entropies=[1.23456, 0.5, None, 2],
    )
    p = heatmap_payload(view, threshold=0.4, doc_id="g1", focus=3, height=200)
    assert p["v"] == 1 and p["n"] == 4 and p["doc_id"] == "g1" and p["mode"] == "view"
    assert p["texts"] == ["The", " sky", " is", " green"] and p["ids"] == [10, 11, 12, 13]
    assert p["scores"] == [0.0123, None, None, 0.9877]
    assert p["logprobs"] == [-0.123, None, -1.0, -2.0]
    assert p["entropies"] == [1.235, 0.5, None, 2.0]
    assert p["gold"] is None and p["pred"] is None
    assert (p["threshold"], p["focus"], p["height"], p["produced_at"]) == (0.4, 3, 200, None)
    assert "starts" not in p and "ends" not in p  # the browser never sees char offsets
    json.dumps(p, allow_nan=False)  # strict JSON: JSON.parse rejects NaN


def test_payload_gold_pred_and_outcomes():
    view = TokenView.from_lists(["A", "B", "C", "D", "E"], scores=[0.9, 0.9, 0.1, 0.1, None])
    gold = [
        {"start": 0, "end": 1, "label": "Not Supported"},
        {"start": 2, "end": 3, "label": "Not Supported"},
        {"start": 4, "end": 5, "label": "Not Supported"},
    ]
    p = heatmap_payload(view, threshold=0.5, gold_spans=gold)
    assert p["gold"] == ["Not Supported", None, "Not Supported", None, "Not Supported"]
    assert token_outcomes(p) == ["TP", "FP", "FN", None, None]  # unknown score: no outcome
    # predicted spans replace the threshold as the prediction
    p2 = heatmap_payload(view, gold_spans=gold, predicted_spans=[{"start": 2, "end": 4, "label": "Not Supported"}])
    assert p2["pred"] == [0, 0, 1, 1, 0]
    assert token_outcomes(p2) == ["FN", None, "TP", "FP", "FN"]
    assert token_outcomes(heatmap_payload(view)) == [None] * 5  # no gold: no outcome styling


def test_payload_empty_and_produced_at():
    assert heatmap_payload(TokenView.from_lists([]))["n"] == 0
    view = TokenView.from_lists(["a", "b"])
    assert heatmap_payload(view, produced_at=123.0)["produced_at"] == 123.0
    assert heatmap_payload(view, produced_at=[1, 2])["produced_at"] == [1.0, 2.0]
    with pytest.raises(ValueError):
        heatmap_payload(view, produced_at=[1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "paint"}, "mode"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"focus": -1}, "focus"),
        ({"focus": 1.5}, "focus"),
        ({"height": 10}, "height"),
    ],
)
def test_payload_rejects_bad_arguments(kwargs, message):
    with pytest.raises(UserError, match=message):
        heatmap_payload(TokenView.from_lists(["a", "b"]), **kwargs)


def test_payload_for_5000_tokens_is_small_and_fast():
    import time

    n = 5000
    view = TokenView.from_lists(
        [" word"] * n,
        ids=list(range(n)),
        scores=[i / n for i in range(n)],
        logprobs=[-1.23456] * n,
        entropies=[2.34567] * n,
    )
    gold = [{"start": 5 * i, "end": 5 * i + 10, "label": "Not Supported"} for i in range(0, n, 50)]
    t0 = time.perf_counter()
    p = heatmap_payload(view, gold_spans=gold)
    took = time.perf_counter() - t0
    size = len(json.dumps(p, separators=(",", ":")))
    assert size / n < 70, size / n  # bytes per token, gold strings included
    assert took < 0.25, took
    assert sum(g is not None for g in p["gold"]) == 200  # each span covers two tokens


def test_focus_past_the_end_waits_for_the_token():
    assert heatmap_payload(TokenView.from_lists(["a", "b"]), focus=7)["focus"] == 7


# --- edit mode (the span editor) -----------------------------------------------------------------

# "Ich 👍🏽 mag 東京 🎉 und 𠮷野家!" split like a byte-level tokenizer: pieces of one
# character are "" tokens (zero width), astral characters are one code point, two UTF-16 units.
EDIT_TEXTS = ["Ich", " 👍", "🏽", "", " mag", " 東", "京", " 🎉", "", " und", " 𠮷", "野家", "!"]


def _edit(spans=(), suggestions=(), **kw):
    view = TokenView.from_lists(EDIT_TEXTS)
    return view, heatmap_payload(view, mode="edit", spans=list(spans), suggestions=list(suggestions), **kw)


def test_edit_payload_sends_code_point_offsets_spans_and_suggestions():
    text = "".join(EDIT_TEXTS)
    assert text == "Ich 👍🏽 mag 東京 🎉 und 𠮷野家!"
    tokyo, yoshi = text.index("東京"), text.index("𠮷野家")
    assert (tokyo, yoshi) == (11, 20)  # code points; UTF-16 would say 13 and 23
    assert len(text[:yoshi].encode("utf-16-le")) // 2 == 23
    view, p = _edit(
        spans=[
            {"start": yoshi, "end": yoshi + 3, "label": "unverifiable", "note": "  check  "},
            Span(tokyo, tokyo + 2, "Not Supported"),
        ],
        suggestions=[
            {"start": text.index("🎉"), "end": text.index("🎉") + 1, "score": 0.812345},
            hm_suggestion(tokyo, tokyo + 1, 0.9),
        ],
        base_version=3,
        draft_key="d-1",
        doc_id="g7",
    )
    e = p["edit"]
    assert p["mode"] == "edit" and p["doc_id"] == "g7"
    assert e["starts"] == view.starts and e["ends"] == view.ends
    assert e["starts"][:4] == [0, 3, 5, 6] and e["ends"][:4] == [3, 5, 6, 6]  # the "" piece is zero-width
    # spans: canonical labels, notes stripped, sorted (code points, exactly as given)
    assert e["spans"] == [
        {"start": 11, "end": 13, "label": "Not Supported", "note": None},
        {"start": 20, "end": 23, "label": "Insufficient Information", "note": "check"},
    ]
    assert e["suggestions"] == [{"start": 11, "end": 12, "score": 0.9}, {"start": 14, "end": 15, "score": 0.8123}]
    assert (e["base_version"], e["draft_key"], e["conflict"]) == (3, "d-1", None)
    # what the browser draws per token for these spans (the training-label overlap rule)
    assert edit_token_labels(p) == [
        None,
        None,
        None,
        None,
        None,
        "Not Supported",
        "Not Supported",
        None,
        None,
        None,
        "Insufficient Information",
        "Insufficient Information",
        None,
    ]
    assert visible_suggestions(p) == [e["suggestions"][1]]  # the one on 東 overlaps a span
    assert "texts" in p and p["gold"] is None and p["pred"] is None
    json.dumps(p, allow_nan=False)


def hm_suggestion(start, end, score):
    return Suggestion(start, end, score)


def test_edit_payload_draft_key_defaults_and_view_mode_rejects_edit_arguments():
    view = TokenView.from_lists(["a", " b"])
    assert heatmap_payload(view, mode="edit", doc_id="g1")["edit"]["draft_key"] == "g1"
    assert heatmap_payload(view)["edit"] is None and "starts" not in heatmap_payload(view)
    for kwargs in (
        {"spans": []},
        {"suggestions": []},
        {"draft_key": "k"},
        {"base_version": 2},
        {"conflict": {"theirs": [], "their_version": 1}},
    ):
        with pytest.raises(UserError, match="edit mode"):
            heatmap_payload(view, **kwargs)


def test_edit_payload_normalises_overlaps_and_reads_a_conflict():
    text = "".join(EDIT_TEXTS)
    _, p = _edit(
        spans=[{"start": 0, "end": 8, "label": "Supported"}, {"start": 4, "end": 14, "label": "Not Supported"}],
        conflict={
            "theirs": [{"start": 9, "end": 13, "label": "N/A", "note": "x"}],
            "their_version": 4,
            "saved_by": "bob",
            "mine": "ignored",
        },
    )
    # later spans win (core.text.editing.normalise_spans): the first is cut back and trimmed
    assert p["edit"]["spans"] == [
        {"start": 0, "end": 3, "label": "Supported", "note": None},
        {"start": 4, "end": 14, "label": "Not Supported", "note": None},
    ]
    assert text[0:3] == "Ich"
    assert p["edit"]["conflict"] == {
        "theirs": [{"start": 9, "end": 13, "label": "N/A", "note": "x"}],
        "their_version": 4,
        "saved_by": "bob",
    }


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"spans": [{"start": 2, "end": 99, "label": "Supported"}]}, "past the end"),
        ({"spans": [{"start": 2, "end": 2, "label": "Supported"}]}, "empty"),
        ({"spans": [{"start": 0, "end": 2, "label": "maybe"}]}, "unknown label"),
        ({"spans": [{"start": 0, "end": 2, "label": "N/A", "note": 5}]}, "note"),
        ({"spans": {"start": 0}}, "list"),
        ({"suggestions": [{"start": 0, "end": 2}]}, "score"),
        ({"suggestions": [{"start": 3, "end": 2, "score": 0.5}]}, "start < end"),
        ({"suggestions": [(0, 2, 0.5)]}, "object"),
        ({"base_version": True}, "base_version"),
        ({"base_version": "1"}, "base_version"),
        ({"draft_key": 7}, "draft_key"),
        ({"conflict": {"theirs": []}}, "their_version"),
        ({"conflict": [1]}, "conflict"),
    ],
)
def test_edit_payload_rejects_bad_input_with_one_clear_error(kwargs, message):
    with pytest.raises(UserError, match=message):
        heatmap_payload(TokenView.from_lists(EDIT_TEXTS), mode="edit", **kwargs)


def test_selection_helpers_mirror_the_browser():
    view = TokenView.from_lists(EDIT_TEXTS)
    text = "".join(EDIT_TEXTS)
    # token-snapped: " 東" .. "京" -> "東京" (leading space trimmed), either direction
    assert token_selection_to_span(view, 5, 6) == token_selection_to_span(view, 6, 5) == (11, 13)
    # the "" piece alone is zero-width: the selection holds nothing but is snapped to its place
    with pytest.raises(UserError, match="whitespace"):
        token_selection_to_span(view, 3, 3)
    assert token_selection_to_span(view, 1, 3) == (text.index("👍"), text.index("👍") + 2)
    # Alt: DOM offsets are UTF-16 within a token's text node; " 𠮷" is 3 units, 2 code points
    i = EDIT_TEXTS.index(" 𠮷")
    assert dom_selection_to_span(EDIT_TEXTS, i, 1, i, 3) == (20, 21)  # exactly 𠮷
    assert text[20:21] == "𠮷"
    assert dom_selection_to_span(EDIT_TEXTS, i + 1, 1, i, 1) == (20, 22)  # backwards, into the next token
    assert dom_selection_to_span(EDIT_TEXTS, i, 1, i, 2) == (20, 21)  # half a pair widens to the character
    with pytest.raises(UserError, match="empty"):
        dom_selection_to_span(EDIT_TEXTS, i, 1, i, 1)
    with pytest.raises(UserError, match="outside"):
        dom_selection_to_span(EDIT_TEXTS, i, 4, i, 1)


def test_saved_spans_validates_what_the_browser_sent():
    view = TokenView.from_lists(EDIT_TEXTS)
    got = saved_spans(
        {
            "spans": [
                {"start": 20, "end": 23, "label": "Not Supported", "note": " n "},
                {"start": 11, "end": 13, "label": "supported"},
            ],
            "base_version": 0,
        },
        view,
    )
    assert got == [Span(11, 13, "Supported"), Span(20, 23, "Not Supported", "n")]
    for bad, message in (
        ({"spans": [{"start": 0, "end": 999, "label": "N/A"}]}, "past the end"),
        ({"spans": ["0-3"]}, "object"),
        ({"nope": 1}, "no span list"),
        (None, "no span list"),
        ({"spans": [{"start": "0", "end": 3, "label": "N/A"}]}, "integer"),
    ):
        with pytest.raises(UserError, match=message):
            saved_spans(bad, view)


def test_edit_payload_for_2000_tokens_is_small_and_fast():
    import time

    n = 2000
    view = TokenView.from_lists([" word"] * n, scores=[i / n for i in range(n)])
    spans = [{"start": 5 * i + 1, "end": 5 * i + 5, "label": "Not Supported"} for i in range(0, n, 20)]
    sugs = [{"start": 5 * i + 1, "end": 5 * i + 5, "score": 0.9} for i in range(5, n, 20)]
    t0 = time.perf_counter()
    p = heatmap_payload(view, mode="edit", spans=spans, suggestions=sugs)
    took = time.perf_counter() - t0
    size = len(json.dumps(p, separators=(",", ":")))
    assert took < 0.25, took
    assert size / n < 70, size / n
    assert len(p["edit"]["spans"]) == 100 and len(p["edit"]["suggestions"]) == 100


def test_js_editor_mirrors_python_constants():
    assert "const LABELS = [];" in JS["spans.js"]  # filled from the payload's style (most severe first)
    keys = re.search(r"const LABEL_KEYS = \[(.*?)\];", JS["actions.js"]).group(1)
    assert re.findall(r'"(\d)"', keys) == ["1", "2", "3", "0"]  # key k labels LABELS[rank of k]
    from core.text.editing import EditHistory

    assert "const HISTORY_LIMIT = 200;" in JS["spans.js"]
    assert EditHistory.__init__.__defaults__ == ((), 200)
    code = re.sub(r"//[^\n]*", "", JS["toolbar.js"])
    assert "noteInput.value = s.note" in code and "textContent = `Note on" in code  # notes are text, never HTML


def test_edit_mode_mounts_with_save_and_draft_results():
    """Headless: edit mode needs a key, and its result always has `save` and `draft`."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_string(
        "import streamlit as st\n"
        "from core.components.heatmap import TokenView, token_heatmap\n"
        "v = TokenView.from_lists(['Paris', ' is', ' nice'])\n"
        "r = token_heatmap(v, mode='edit', key='ed', spans=[{'start': 0, 'end': 5, 'label': 'Supported'}],\n"
        "                  suggestions=[{'start': 6, 'end': 8, 'score': 0.7}], base_version=2, draft_key='x',\n"
        "                  on_save=lambda p: None)\n"
        "st.write(repr((r.save, r.draft)))\n"
    ).run()
    assert not at.exception
    assert "(None, None)" in at.markdown[0].value
    with pytest.raises(UserError, match="needs a key"):
        hm.token_heatmap(TokenView.from_lists(["a"]), mode="edit")


def test_component_mounts_in_apptest_and_duplicate_keys_fail():
    """A headless Streamlit run: one mount is fine; one key twice in a run is an error."""
    from streamlit.testing.v1 import AppTest

    ok = AppTest.from_string(
        "from core.components.heatmap import TokenView, token_heatmap\n"
        "token_heatmap(TokenView.from_lists(['a', ' b'], scores=[0.1, 0.9]), key='k')\n"
        "token_heatmap(TokenView.from_lists(['c']), key='k2')\n"
    ).run()
    assert not ok.exception
    from streamlit import config

    shown = config.get_option("client.showErrorDetails")
    config.set_option("client.showErrorDetails", "full")  # the app's config redacts error messages
    try:
        dup = AppTest.from_string(
            "import streamlit as st\n"
            "from core.components.heatmap import TokenView, token_heatmap\n"
            "v = TokenView.from_lists(['a'])\n"
            "token_heatmap(v, key='k')\n"
            "@st.fragment\n"
            "def live():\n"
            "    token_heatmap(v, key='k')\n"
            "live()\n"
        ).run()
    finally:
        config.set_option("client.showErrorDetails", shown)
    assert dup.exception and "key='k'" in dup.exception[0].value


def test_importing_core_components_does_not_import_streamlit():
    import subprocess
    import sys

    code = "import sys, core.components; print('streamlit' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        check=True,
    )
    assert out.stdout.strip() == "False"
    assert math.isfinite(hm.LIGHT_TEXT_FROM)


# --- the browser code's files --------------------------------------------------------------------

NAMESPACES = {name: name[:-3].capitalize() for name in hm.JS_FILES if name != "index.js"}


def _code(text: str) -> str:
    """JS without its comments (good enough for the files here: no '//' inside strings)."""
    return re.sub(r"/\*.*?\*/", "", re.sub(r"(?m)^\s*//.*$|\s//\s.*$", "", text), flags=re.S)


def test_js_files_define_one_namespace_each_and_use_only_those_above():
    assert set(p.name for p in JS_DIR.glob("*.js")) == set(hm.JS_FILES), "JS_FILES lists every file in js/"
    assert hm.JS_FILES[-1] == "index.js"
    for k, name in enumerate(hm.JS_FILES):
        outside = re.sub(r"\(\(\) => \{\n.*?\n\}\)\(\);", "(IIFE);", JS[name], flags=re.S)  # a file's own scope
        top = re.findall(r"(?m)^(?:export default )?(?:const|let|var|function|class)\s+(\w+)", outside)
        if name == "index.js":
            assert "export default function heatmap(" in JS[name]
            continue
        assert top == [NAMESPACES[name]], (name, top)  # one name: files cannot collide
        assert "export " not in _code(JS[name]), name  # only the entry has module syntax
        later = [NAMESPACES[n] for n in hm.JS_FILES[k + 1 :] if n != "index.js"]
        used = [ns for ns in later if re.search(rf"\b{ns}\b", _code(JS[name]))]
        assert not used, f"{name} uses {used}, defined below it in JS_FILES"
    assert all(text.count("\n") <= 600 for text in JS.values())


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_component_js_is_one_es_module_with_a_default_export(tmp_path):
    for strip in (True, False):
        bundle = tmp_path / f"heatmap-{strip}.mjs"
        bundle.write_text(hm.component_js(strip=strip), encoding="utf-8")
        got = node_json(
            f"import({json.dumps(bundle.as_uri())}).then(m => {{"
            "process.stdout.write(JSON.stringify(typeof m.default)); process.exit(0); })"
        )
        assert got == "function"
    assert len(hm.component_js()) < 0.8 * len(hm.component_js(strip=False))  # comments are not sent


@pytest.fixture(scope="module")
def js_eval():
    """Run a JS function `(P, arg) => result` with P = the namespace of ONE js/ file loaded on
    its own: in node when there is one, else in Chromium (tests/support/js_eval.py)."""
    with js_runner() as run:
        yield run


def test_js_colours_are_python_colours(js_eval):
    grid = [None, -1, 1.5] + [round(i / 1000, 4) for i in range(1001)] + [0.625, 0.12345]
    got = js_eval("colour.js", "(P, xs) => xs.map(x => [P.scoreColor(x), P.textColor(x)])", grid)
    assert got == [[score_color(x), text_color(x)] for x in grid]


# --- the JS span rules are the Python ones (spans.js alone vs core.text.editing) ------------------


def _d(spans) -> list[dict]:
    return [{"start": s.start, "end": s.end, "label": s.label, "note": s.note} for s in spans]


def test_js_span_rules_match_core_editing_on_random_cases(js_eval):
    rng = random.Random(11)
    labels = ["Not Supported", "Insufficient Information", "Supported", "N/A"]
    cases = []
    for _ in range(300):
        text = "".join(rng.choice(["a", "b", " ", "\n", "東", "🎉", "\u3000"]) for _ in range(rng.randint(5, 40)))
        n = len(text)

        def rand_span(note_ok=True, n=n):
            a = rng.randrange(0, n - 1)
            b = rng.randrange(a + 1, n + 1)
            return Span(a, b, rng.choice(labels), rng.choice([None, None, "n1", "n2"]) if note_ok else None)

        spans = normalise_spans([rand_span() for _ in range(rng.randint(0, 5))], text)
        new = rand_span()
        idx = rng.randrange(len(spans)) if spans else None
        sugs = [  # some carry a judge's own label and note
            Suggestion(s.start, s.end, round(rng.random(), 2), *rng.choice([(None, None), (s.label, "why")]))
            for s in sorted(
                normalise_spans([rand_span(False) for _ in range(rng.randint(0, 4))]), key=lambda s: s.start
            )
        ]
        cases.append(
            {
                "text": text,
                "spans": _d(spans),
                "new": _d([new])[0],
                "idx": idx,
                "label": rng.choice(labels),
                "note": rng.choice(["  keep me ", "", "  ", "x"]),
                "sugs": [
                    {"start": s.start, "end": s.end, "score": s.score, "label": s.label, "note": s.note} for s in sugs
                ],
                "min": rng.choice([0.0, 0.3, 0.5, 0.9]),
                "expect": {"add": _d(add_span(spans, new, text=text)), "relabel": None},
            }
        )
    for c in cases:
        spans = [Span(**s) for s in c["spans"]]
        if c["idx"] is not None:
            c["expect"]["relabel"] = _d(relabel(spans, c["idx"], c["label"]))
            c["expect"]["delete"] = _d(delete_span(spans, c["idx"]))
            c["expect"]["note"] = _d(set_note(spans, c["idx"], c["note"]))
        c["expect"]["accept"] = _d(accept_suggestions(spans, [Suggestion(**s) for s in c["sugs"]], c["min"]))
    got = js_eval(
        "spans.js",
        """(P, cases) => cases.map(c => {
            const chars = Array.from(c.text);
            const plain = l => l.map(s => ({start: s.start, end: s.end, label: s.label, note: s.note}));
            const spans = c.spans.map(s => Object.freeze({...s}));
            const out = {add: plain(P.addSpan(spans, c.new, chars)), relabel: null};
            if (c.idx !== null) {
                out.relabel = plain(P.relabelSpan(spans, c.idx, c.label));
                out.delete = plain(P.deleteSpan(spans, c.idx));
                out.note = plain(P.setNote(spans, c.idx, c.note));
            }
            out.accept = plain(P.acceptSuggestions(spans, c.sugs, c.min, 'Not Supported'));
            return out;
        })""",
        cases,
    )
    for c, g in zip(cases, got):
        assert g == c["expect"], (c["text"], c["spans"], c["new"], c["idx"])


def test_js_selections_match_python_on_random_cases(js_eval):
    rng = random.Random(5)
    pieces = [
        "a",
        " b",
        "東京",
        " 🎉",
        "👍🏽",
        "",
        " ",
        "\n",
        "𠮷",
        "x\u3000",
        "\u0301e",
        ",",
        ".",
        " (",
        ")",
        "»",
        " «",
        "%",
        " -",
        "。",
        "!\u2019",
    ]
    cases = []
    for _ in range(200):
        texts = [rng.choice(pieces) for _ in range(rng.randint(1, 12))]
        text = "".join(texts)
        offsets, pos = [], 0
        for t in texts:
            offsets.append((pos, pos + len(t)))
            pos += len(t)
        a, b = rng.randrange(len(texts)), rng.randrange(len(texts))
        try:
            tok_want = list(selection_to_span(offsets, a, b, text=text))
        except Exception as exc:
            tok_want = str(exc)
        total16 = len(text.encode("utf-16-le")) // 2
        ua, ub = rng.randint(0, total16), rng.randint(0, total16)
        try:
            char_want = list(utf16_selection_to_span(text, ua, ub))
        except Exception as exc:
            char_want = str(exc)
        cases.append(
            {
                "texts": texts,
                "starts": [s for s, _ in offsets],
                "ends": [e for _, e in offsets],
                "a": a,
                "b": b,
                "ua": ua,
                "ub": ub,
                "tok": tok_want,
                "char": char_want,
            }
        )
    got = js_eval(
        "spans.js",
        """(P, cases) => cases.map(c => {
            const chars = Array.from(c.texts.join(''));
            const {u16Before, cpBefore} = P.prefixSums(c.texts);
            const t = P.tokenSelectionSpan(c.starts, c.ends, chars, c.a, c.b);
            const ch = P.charSelectionSpan(c.texts, u16Before, cpBefore, c.ua, c.ub);
            return {tok: t.error ? t.error : [t.start, t.end], char: ch.error ? ch.error : [ch.start, ch.end]};
        })""",
        cases,
    )
    for c, g in zip(cases, got):
        assert g["tok"] == c["tok"], (c["texts"], c["a"], c["b"])
        assert g["char"] == c["char"], (c["texts"], c["ua"], c["ub"])


def test_js_whitespace_is_python_isspace(js_eval):
    bmp = [chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    js = js_eval("spans.js", "(P, chars) => chars.map(c => P.isSpace(c))", bmp)
    diff = [hex(ord(c)) for c, j in zip(bmp, js) if c.isspace() != j]
    assert diff == []
