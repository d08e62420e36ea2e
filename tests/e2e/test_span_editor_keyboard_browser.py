"""Keyboard-only span creation in the span editor, in Chromium (issue #25, friction 5).

← / → move a caret by token (spaces-only tokens are passed over), Home / End jump to the first
/ last token, Shift+← / Shift+→ select the caret's token and grow or shrink the selection token
by token, and the label keys then apply to it exactly as to a mouse selection (the same
trimming). Keys typed in a text box (the page's comment box, the editor's note) stay there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from heatmap_cases import EDIT_TEXTS, edit_case

from tests.support.heatmap_reference import token_selection_to_span
from tests.support.span_editor import classes, contrast, drag_tokens, open_editor, shadow_eval, spans_of, wait_saves

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(),
        reason="/usr/bin/chromium is missing: apt-get install chromium to run browser tests",
    ),
]

TEXT = "".join(EDIT_TEXTS)
LAST = len(EDIT_TEXTS) - 1  # "." (the last token with a visible character)
NEWLINE = EDIT_TEXTS.index("\n")

# The caret's box(es), the token it names and the colours that draw it (inside the shadow root).
CARET = """root => {
    const boxes = [...root.querySelectorAll('.ple-caret')];
    const id = root.getAttribute('aria-activedescendant');
    const named = id ? root.getRootNode().getElementById(id) : null;
    const s = boxes.length ? getComputedStyle(boxes[0]) : null;
    const r = boxes.length ? boxes[0].getBoundingClientRect() : null;
    return {count: boxes.length, role: root.getAttribute('role'), named: named ? Number(named.dataset.i) : null,
            border: s && s.borderTopColor, width: s && s.borderTopWidth, shadow: s && s.boxShadow,
            box: r && {x: r.left, y: r.top, r: r.right, b: r.bottom}};
}"""
HAS_FOCUS = "root => root.getRootNode().activeElement === root"


def caret(root) -> str:
    return root.get_attribute("data-caret")


def selection(root) -> tuple[int, int] | None:
    got = root.get_attribute("data-selection")
    return tuple(map(int, got.split("-"))) if got else None


def press(page, key: str, times: int = 1) -> None:
    for _ in range(times):
        page.keyboard.press(key)


def test_keyboard_span_over_tokens_3_to_5_is_the_mouse_span(page, heatmap_app):
    view, _ = edit_case()
    want = token_selection_to_span(view, 3, 5)  # " (", "🗻", ")": the brackets are trimmed
    assert TEXT[want[0] : want[1]] == "🗻"

    # the mouse: drag over tokens 3..5, label 1, save
    root = open_editor(page, heatmap_app, draft_key="kbd-mouse")
    drag_tokens(page, root, 3, 5)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    by_mouse = wait_saves(page, 1)
    assert [(s["start"], s["end"], s["label"]) for s in by_mouse["spans"]] == [(*want, "Not Supported")]

    # the keyboard alone: the editor has the keys from the start, nothing is clicked
    root = open_editor(page, heatmap_app, draft_key="kbd-keys")
    assert shadow_eval(page, HAS_FOCUS)
    assert caret(root) == ""  # no caret until a caret key
    page.keyboard.press("Home")
    assert caret(root) == "0"
    press(page, "ArrowRight", 3)
    assert caret(root) == "3" and selection(root) is None
    got = shadow_eval(page, CARET)
    assert got["count"] == 1 and got["role"] == "application" and got["named"] == 3  # aria-activedescendant
    # the caret is a visible box on token 3, dark on a white edge (>= 3:1 on any risk colour)
    b = root.locator(".plh-text span[data-i='3']").bounding_box()
    assert got["box"]["x"] <= b["x"] + b["width"] and got["box"]["r"] >= b["x"] + 2
    assert got["box"]["y"] <= b["y"] + b["height"] / 2 <= got["box"]["b"]
    assert float(got["width"][:-2]) >= 2 and "rgb(255, 255, 255)" in got["shadow"]
    assert contrast(got["border"], "#ffffff") >= 3
    assert "«(»" in root.locator(".ple-status-text").inner_text()

    press(page, "Shift+ArrowRight", 3)  # the caret's token, then two more
    assert selection(root) == want
    assert [i for i in range(len(EDIT_TEXTS)) if "sel" in classes(root, i)] == [3, 4, 5]
    assert caret(root) == "5"  # the caret is the selection's moving end
    page.keyboard.press("1")
    assert [(s["start"], s["end"], s["label"]) for s in spans_of(root)] == [(*want, "Not Supported")]
    assert selection(root) is None and caret(root) == "5"
    page.keyboard.press("Enter")
    by_keys = wait_saves(page, 1)
    assert by_keys["spans"] == by_mouse["spans"]  # the same stored span
    assert page.errors == []


def test_shift_left_shrinks_and_the_caret_stops_at_the_first_and_last_token(page, heatmap_app):
    view, _ = edit_case()
    root = open_editor(page, heatmap_app, draft_key="kbd-bounds")
    page.keyboard.press("ArrowRight")  # no caret yet: it appears on the first token
    assert caret(root) == "0"
    page.keyboard.press("ArrowLeft")
    assert caret(root) == "0"  # bounded ...
    assert "first token" in root.locator(".ple-msg").inner_text()
    page.keyboard.press("End")
    assert caret(root) == str(LAST)
    press(page, "ArrowRight", 2)
    assert caret(root) == str(LAST)  # ... at both ends
    assert "last token" in root.locator(".ple-msg").inner_text()
    press(page, "ArrowLeft", LAST - NEWLINE)  # "\n" holds no visible character: passed over
    assert caret(root) == str(NEWLINE - 1)
    page.keyboard.press("Home")
    assert caret(root) == "0"

    press(page, "ArrowRight", 3)
    press(page, "Shift+ArrowRight", 3)
    assert selection(root) == token_selection_to_span(view, 3, 5)
    page.keyboard.press("Shift+ArrowLeft")  # shrinks by a token
    assert selection(root) == token_selection_to_span(view, 3, 4)
    assert [i for i in range(len(EDIT_TEXTS)) if "sel" in classes(root, i)] == [3, 4]
    page.keyboard.press("Shift+ArrowLeft")
    assert selection(root) == token_selection_to_span(view, 3, 3)  # "(" alone
    page.keyboard.press("Shift+ArrowLeft")  # past the anchor: grows to the left
    assert selection(root) == token_selection_to_span(view, 2, 3) and caret(root) == "2"
    page.keyboard.press("Shift+Home")
    assert selection(root) == token_selection_to_span(view, 0, 3)
    page.keyboard.press("Shift+End")  # from the same anchor to the last token
    assert selection(root) == token_selection_to_span(view, 3, LAST) and caret(root) == str(LAST)

    page.keyboard.press("Escape")  # clears the selection, keeps the caret ...
    assert selection(root) is None and caret(root) == str(LAST)
    page.keyboard.press("Escape")  # ... then hides it
    assert caret(root) == "" and shadow_eval(page, CARET)["count"] == 0
    assert root.get_attribute("aria-activedescendant") is None

    # a selection made with the mouse is grown from its moving end
    drag_tokens(page, root, 7, 8)
    page.keyboard.press("Shift+ArrowRight")
    assert selection(root) == token_selection_to_span(view, 7, 9) and caret(root) == "9"
    page.keyboard.press("ArrowRight")  # a plain arrow drops the selection, the caret moves on
    assert selection(root) is None and caret(root) == "10"
    assert spans_of(root) == []
    assert page.errors == []


def test_keys_typed_in_a_text_box_do_not_move_the_caret(page, heatmap_app):
    root = open_editor(page, heatmap_app, draft_key="kbd-typing")
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")
    assert caret(root) == "1"

    # the page's comment box
    box = page.get_by_label("Comment", exact=True)
    box.click()
    box.type("Berg?")
    for key in ("ArrowLeft", "Home", "End", "Shift+ArrowLeft", "Shift+ArrowRight", "ArrowRight", "1", "Escape"):
        page.keyboard.press(key)
    assert box.input_value() == "Berg?1"
    assert caret(root) == "1" and selection(root) is None and spans_of(root) == []

    # the editor's own note box (N on a focused span)
    root.locator(".plh-text").click(position={"x": 1, "y": 1})  # the keys back to the editor
    page.keyboard.press("Home")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("3")
    assert root.get_attribute("data-focus") == "span:0" and caret(root) == "0"
    page.keyboard.press("n")
    note = root.locator(".ple-note-input")
    assert note.evaluate("el => el.getRootNode().activeElement === el")
    note.type("ok")
    for key in ("ArrowLeft", "Home", "Shift+ArrowRight", "End", "ArrowRight"):
        page.keyboard.press(key)
    assert note.input_value() == "ok"
    assert note.evaluate("el => [el.selectionStart, el.selectionEnd]") == [2, 2]  # End moved the text cursor
    assert caret(root) == "0" and selection(root) is None
    page.keyboard.press("Enter")  # saves the note, the keys go back to the editor
    assert spans_of(root)[0]["note"] == "ok"
    page.keyboard.press("ArrowRight")
    assert caret(root) == "1"
    assert re.search(r"«Berg»", root.locator(".ple-status-text").inner_text())
    assert page.errors == []


def test_end_on_a_long_answer_scrolls_to_the_caret_and_draws_it(page, heatmap_app):
    root = open_editor(page, heatmap_app, n=2000, height=420, draft_key="kbd-long")
    page.keyboard.press("End")
    last = int(caret(root))
    assert last > 1900
    page.keyboard.press("Shift+ArrowLeft")  # the caret's token
    page.keyboard.press("Shift+ArrowLeft")
    page.keyboard.press("2")
    assert len(spans_of(root)) == 1 and spans_of(root)[0]["label"] == "Insufficient Information"
    got = shadow_eval(page, CARET)
    box = root.locator(".plh-text").bounding_box()
    assert got["count"] == 1 and got["named"] == last - 1
    assert box["y"] <= got["box"]["y"] and got["box"]["b"] <= box["y"] + box["height"] + 1  # in view, drawn
    assert page.errors == []
