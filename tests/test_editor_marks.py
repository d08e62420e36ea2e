"""What the span editor trims from a selection and how it marks tokens, Python against JS.

- Punctuation trimmed at the ends of a token-snapped selection: core.text.editing's
  `is_edge_punctuation` and spans.js's `isEdgePunct`, loaded on its own, agree on every
  character Python's Unicode database knows (random selections are compared in
  tests/test_components.py).
- Label underlines and suggestion overlines: the palette of each band of scores keeps a
  WCAG contrast of at least 3:1 with every background of its band, down to the darkest red;
  js/colour.js takes the palettes and bands from the payload's style, and the component's CSS
  draws exactly those colours (through the variables the JS sets from them).
"""

from __future__ import annotations

import re
import sys
import unicodedata

import pytest

from core.components import heatmap as hm
from core.components.heatmap import GOLD_COLOURS, LINE_COLOURS, LINE_TONE_FROM, SUGGESTION_LINE, UNKNOWN_COLOR
from core.text.editing import is_edge_punctuation
from tests.support.heatmap_reference import line_colour, line_tone, score_color
from tests.support.js_eval import js_runner
from tests.support.span_editor import contrast

CSS = hm.component_css()  # heatmap.css and the label rules generated from Python
GRID = [None, float("nan"), -1.0, 1.5] + [i / 10_000 for i in range(10_001)]
CLS = {label: f"g-{key}" for label, key in hm.LABEL_KEYS.items()}


@pytest.fixture(scope="module")
def js_eval():
    with js_runner() as run:
        yield run


def test_js_edge_punctuation_is_python_edge_punctuation(js_eval):
    # every BMP character but surrogates, and the astral ones Python's Unicode assigns (JS may
    # know a newer Unicode: characters new since then are not compared)
    chars = [
        chr(c)
        for c in range(sys.maxunicode + 1)
        if not 0xD800 <= c <= 0xDFFF and (c < 0x10000 or unicodedata.category(chr(c)) != "Cn")
    ]
    js = js_eval(
        "spans.js", "(P, s) => Array.from(s).map(c => (P.isEdgePunct(c) ? '1' : '0')).join('')", "".join(chars)
    )
    assert len(js) == len(chars)
    new_in_js = [hex(ord(c)) for c, j in zip(chars, js) if unicodedata.category(c) == "Cn" and j == "1"]
    diff = [
        hex(ord(c))
        for c, j in zip(chars, js)
        if unicodedata.category(c) != "Cn" and is_edge_punctuation(c) != (j == "1")
    ]
    assert diff == []
    assert len(new_in_js) < 20, new_in_js  # only characters assigned after Python's Unicode version
    assert sum(map(is_edge_punctuation, chars)) > 500
    assert not any(map(is_edge_punctuation, "%‰#@&-°$+a1 \n"))
    assert all(map(is_edge_punctuation, ".,;:!?…'\"«»“”‘’()[]{}—–。、「」"))


# --- lines that keep their contrast ------------------------------------------------------------------


def test_every_line_keeps_3_to_1_contrast_with_the_token_under_it():
    assert set(LINE_COLOURS[0]) == {*GOLD_COLOURS, SUGGESTION_LINE} and all(
        set(p) == set(LINE_COLOURS[0]) for p in LINE_COLOURS
    )
    assert LINE_COLOURS[0] == {**GOLD_COLOURS, SUGGESTION_LINE: LINE_COLOURS[0][SUGGESTION_LINE]}
    worst = {}
    for score in GRID:
        bg = score_color(score)
        for what in LINE_COLOURS[0]:
            ratio = contrast(line_colour(what, score), bg)
            worst[what] = min(worst.get(what, 99.0), ratio)
            assert ratio >= 3, (what, score, bg, line_colour(what, score), round(ratio, 2))
    # the darkest risk colour, orange, and an unknown score, spelled out
    assert score_color(1.0) == "#a50026" and line_tone(1.0) == 2
    assert all(contrast(c, "#a50026") >= 3 for c in LINE_COLOURS[2].values())
    assert all(contrast(c, score_color(0.5)) >= 3 for c in LINE_COLOURS[1].values())
    assert line_tone(None) == 0 and all(contrast(c, UNKNOWN_COLOR) >= 3 for c in LINE_COLOURS[0].values())
    assert min(worst.values()) >= 3.1


def test_js_line_tones_and_colours_are_python_ones(js_eval):
    grid = [s for s in GRID if s is None or s == s]  # JSON has no NaN
    got = js_eval(
        "colour.js",
        "(P, xs) => ({tones: xs.map(x => P.lineTone(x)), from: P.LINE_TONE_FROM, "
        "colours: P.LINE_COLOURS, cls: P.LINE_CLS})",
        grid,
    )
    assert got["tones"] == [line_tone(s) for s in grid]
    assert got["from"] == list(LINE_TONE_FROM)
    assert got["colours"] == [dict(p) for p in LINE_COLOURS]
    assert got["cls"] == ["", "ln1", "ln2"]


def test_css_draws_the_palettes(js_eval):
    """heatmap.css draws with variables; the JS gives them the payload's colours (cssVariables)."""
    variables = js_eval("colour.js", "(P) => P.cssVariables()", None)

    def rule(selector: str, prop: str) -> str:
        m = re.search(rf"(?m)^{re.escape(selector)}\s*\{{[^}}]*?{prop}:\s*(?:3px dotted\s+)?var\((--[\w-]+)\)", CSS)
        assert m, (selector, prop)
        return variables[m.group(1)]

    for label, cls in CLS.items():
        assert rule(f".{cls}", "text-decoration-color") == LINE_COLOURS[0][label]
        for tone in (1, 2):
            assert rule(f".ln{tone}.{cls}", "text-decoration-color") == LINE_COLOURS[tone][label]
    assert rule(".tok.sug", "border-top") == LINE_COLOURS[0][SUGGESTION_LINE]
    for tone in (1, 2):
        assert rule(f".tok.sug.ln{tone}", "border-top-color") == LINE_COLOURS[tone][SUGGESTION_LINE]
