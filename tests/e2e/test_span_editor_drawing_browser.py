"""How the span editor draws, in Chromium (issue #14, item 6: clutter).

- The focused span (or suggestion) is ONE outline, not one box per token (one per line
  when it wraps).
- Label underlines and suggestion overlines keep a 3:1 contrast on orange and red tokens.
- The keys are explained once, in one compact legend line built from the actions table.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from heatmap_cases import EDIT_SCORES, EDIT_TEXTS

from tests.support.span_editor import (
    CHARS_BOX,
    classes,
    contrast,
    drag_points,
    open_editor,
    shadow_eval,
    spans_of,
    tok,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(),
        reason="/usr/bin/chromium is missing: apt-get install chromium to run browser tests",
    ),
]

TEXT = "".join(EDIT_TEXTS)
BOXES = """root => [...root.querySelectorAll('.ple-outline')].map(e => {
    const r = e.getBoundingClientRect(), s = getComputedStyle(e);
    return {x: r.left, y: r.top, r: r.right, b: r.bottom, style: s.borderTopStyle, width: s.borderTopWidth};
})"""
TOKEN_BOXES = """(root, [a, b]) => {
    const out = [];
    for (let i = a; i <= b; i++) {
        const el = root.querySelector(`.plh-text span[data-i='${i}']`), s = getComputedStyle(el);
        out.push({outline: s.outlineStyle, shadow: s.boxShadow});
    }
    return out;
}"""
# How many lines the text from character a of token i to character b of token j is on.
LINES = """(root, [i, a, j, b]) => {
    const el = k => root.querySelector(`.plh-text span[data-i='${k}']`).firstChild;
    const r = document.createRange();
    r.setStart(el(i), a); r.setEnd(el(j), b);
    const mids = [...r.getClientRects()].filter(q => q.width > 1).map(q => q.top + q.height / 2).sort((x, y) => x - y);
    return mids.filter((m, k) => k === 0 || m - mids[k - 1] > 8).length;
}"""


def mid(box: dict, dx: float) -> tuple[float, float]:
    return box["x"] + dx, box["y"] + box["height"] / 2


def selection_text(root) -> str:
    a, b = map(int, root.get_attribute("data-selection").split("-"))
    return TEXT[a:b]


# --- item 6: one outline per focused span ----------------------------------------------------------------


def test_the_focused_span_is_one_outline_not_a_box_per_token(page, heatmap_app):
    root = open_editor(page, heatmap_app)
    dr, sato = EDIT_TEXTS.index(" Dr"), EDIT_TEXTS.index(" Sato")
    b_sato = tok(root, sato).bounding_box()
    drag_points(page, mid(tok(root, dr).bounding_box(), 3), mid(b_sato, b_sato["width"] - 3))
    page.keyboard.press("1")
    assert root.get_attribute("data-focus") == "span:0"
    assert "fspan" in classes(root, dr)
    assert shadow_eval(page, LINES, [dr, 1, sato, 5]) == 1
    boxes = shadow_eval(page, BOXES)
    assert len(boxes) == 1, boxes  # one box for " Dr", ".", " Sato"
    assert boxes[0]["style"] == "solid" and boxes[0]["width"] == "2px"
    assert all(t["outline"] == "none" for t in shadow_eval(page, TOKEN_BOXES, [dr, sato]))  # no box per token
    first = shadow_eval(page, CHARS_BOX, [dr, 1, 2])  # "D": the box starts at the word, not at its space
    last = shadow_eval(page, CHARS_BOX, [sato, 4, 5])  # "o"
    box = boxes[0]
    assert abs(box["x"] - first["x"]) <= 3 and abs(box["r"] - last["r"]) <= 3, (box, first, last)
    assert box["y"] <= first["y"] + 1 and box["b"] >= first["b"] - 1

    # across a line break: one box per line
    die = EDIT_TEXTS.index("\n") + 1
    page.keyboard.press("Escape")
    tok(root, sato).click()  # the first click focuses the span under it ...
    tok(root, sato).click()  # ... the second selects the token
    tok(root, die).click(modifiers=["Shift"])
    assert selection_text(root) == "Sato.\nDie"
    page.keyboard.press("3")
    assert root.get_attribute("data-focus").startswith("span:")
    assert shadow_eval(page, LINES, [sato, 1, die, 3]) == 2
    boxes = shadow_eval(page, BOXES)
    assert len(boxes) == 2, boxes
    assert boxes[1]["y"] >= boxes[0]["b"] - 1  # the second line's box is below the first
    page.keyboard.press("Escape")
    assert shadow_eval(page, BOXES) == []

    # a focused suggestion is one (dotted) box too: "3776 m" is two tokens
    page.keyboard.press("Tab")
    assert root.get_attribute("data-focus") == "sug:0"
    boxes = shadow_eval(page, BOXES)
    assert len(boxes) == 1 and boxes[0]["style"] == "dotted", boxes
    i = EDIT_TEXTS.index(" 3776")
    assert all(t["outline"] == "none" for t in shadow_eval(page, TOKEN_BOXES, [i, i + 1]))
    assert page.errors == []


def test_the_outline_follows_the_text_when_the_width_changes(page, heatmap_app):
    root = open_editor(page, heatmap_app)
    i = EDIT_TEXTS.index(" Sato")  # late on the first line: it wraps elsewhere when narrower
    tok(root, i).click()
    page.keyboard.press("2")
    before = shadow_eval(page, BOXES)
    assert len(before) == 1
    page.set_viewport_size({"width": 480, "height": 900})
    page.wait_for_timeout(500)
    word_box = shadow_eval(page, CHARS_BOX, [i, 1, 5])
    after = shadow_eval(page, BOXES)
    assert (word_box["x"], word_box["y"]) != (before[0]["x"], before[0]["y"])  # the word moved ...
    assert len(after) == 1  # ... and its box with it
    assert abs(after[0]["x"] - word_box["x"]) <= 3 and abs(after[0]["y"] - word_box["y"]) <= 4, (after, word_box)
    assert page.errors == []


# --- item 6: lines that stay visible on orange and red -----------------------------------------------------

LINE_STYLE = """(root, i) => {
    const el = root.querySelector(`.plh-text span[data-i='${i}']`), s = getComputedStyle(el);
    return {bg: s.backgroundColor, under: s.textDecorationColor, thick: s.textDecorationThickness,
            over: s.borderTopColor, overWidth: s.borderTopWidth, overStyle: s.borderTopStyle};
}"""


def test_underlines_and_suggestion_overlines_keep_3_to_1_contrast_on_risky_tokens(page, heatmap_app):
    root = open_editor(page, heatmap_app)
    risky = [i for i, s in enumerate(EDIT_SCORES) if s >= 0.5]  # orange to red tokens
    assert max(EDIT_SCORES[i] for i in risky) > 0.9 and len(risky) >= 5
    # suggestions first (a label hides the suggestion under it)
    for i in risky:
        if "sug" not in classes(root, i):
            continue
        got = shadow_eval(page, LINE_STYLE, i)
        assert got["overStyle"] != "none" and float(got["overWidth"][:-2]) >= 3, got
        assert contrast(got["over"], got["bg"]) >= 3, (EDIT_TEXTS[i], EDIT_SCORES[i], got)
    # every label's underline on every orange or red token
    for key, label in (("1", "Not Supported"), ("2", "Insufficient Information"), ("3", "Supported"), ("0", "N/A")):
        for i in risky:
            if not EDIT_TEXTS[i].strip(" ."):
                continue
            tok(root, i).click()  # selects the token, or focuses the span already on it (relabel)
            page.keyboard.press(key)
            page.keyboard.press("Escape")
            got = shadow_eval(page, LINE_STYLE, i)
            assert float(got["thick"][:-2]) >= 3, got
            assert contrast(got["under"], got["bg"]) >= 3, (label, EDIT_TEXTS[i], EDIT_SCORES[i], got)
        assert {s["label"] for s in spans_of(root)} == {label}
    assert page.errors == []


# --- item 6: one key legend ----------------------------------------------------------------------------------

ROWS = """root => {
    const tops = [...root.querySelectorAll('.ple-bar > *')].filter(e => e.offsetParent)
        .map(e => e.getBoundingClientRect()).filter(r => r.width > 2).map(r => r.top + r.height / 2).sort((a, b) => a - b);
    return tops.filter((t, k) => k === 0 || t - tops[k - 1] > 6).length;
}"""
KEY_STATE = """root => ({kbd: getComputedStyle(root.querySelector('.ple-btn kbd')).opacity,
                  status: getComputedStyle(root.querySelector('.ple-status'), '::before').content})"""


def test_each_key_is_shown_once_on_its_button_and_nowhere_else(page, heatmap_app):
    root = open_editor(page, heatmap_app)
    assert root.locator(".ple-keys").count() == 0  # no second legend line ("Keys active · ...")
    assert "Keys active" not in root.inner_text()
    shown = root.locator("kbd:visible").all_inner_texts()
    assert len(shown) == len(set(shown)), shown  # every key once ...
    assert root.locator(".ple-bar button kbd:visible").count() == len(shown)  # ... on its button
    for key in ("1", "2", "3", "0", "⌫", "N", "Ctrl+Z", "J", "K", "Esc", "Tab", "A", "R", "Enter", "Ctrl+S", "Alt"):
        assert key in shown, key
    assert "(key 1)" in root.locator("button[data-action='label-1']").get_attribute("title")
    assert shadow_eval(page, ROWS) <= 3, "the controls above the text take at most three rows"
    # the mouse gestures are named once, in the status line while nothing is selected
    status = root.locator(".ple-status-text").inner_text()
    assert "drag over the text" in status and "⇧ click" in status, status
    # the status line names what is selected and does not list the label keys again
    tok(root, EDIT_TEXTS.index(" Berg")).click()
    status = root.locator(".ple-status-text").inner_text()
    assert "«Berg»" in status and not re.search(r"hallucinated|unverifiable|\b[1230]\b", status.split("»", 1)[1]), (
        status
    )
    # whether the keys work shows on the keys themselves and in the status line, moving nothing
    active = shadow_eval(page, KEY_STATE)
    assert active["kbd"] == "1" and active["status"] == "none", active
    height = root.bounding_box()["height"]
    page.get_by_label("Another input").click()
    inactive = shadow_eval(page, KEY_STATE)
    assert float(inactive["kbd"]) < 1 and "click the text" in inactive["status"], inactive
    assert root.bounding_box()["height"] == height
    assert page.errors == []
