"""Keyboard-only span creation in Chromium (issue #25, friction 5): ← / → move a one-token
selection by token (blank tokens stepped over), Shift+← / → extend it from its anchor, and the
label keys label it; the keys are on the toolbar, which is the key legend."""

from __future__ import annotations

from pathlib import Path

import pytest
from heatmap_cases import EDIT_TEXTS

from tests.support.span_editor import classes, open_editor, spans_of

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(),
        reason="/usr/bin/chromium is missing: apt-get install chromium to run browser tests",
    ),
]

TEXT = "".join(EDIT_TEXTS)


def selected(root) -> list[int]:
    return [i for i in range(len(EDIT_TEXTS)) if "sel" in classes(root, i)]


def test_spans_are_made_with_arrow_keys_shift_and_label_keys_alone(page, heatmap_app):
    root = open_editor(page, heatmap_app)
    before = spans_of(root)
    root.focus()  # Tab would land here too; no mouse from now on
    page.keyboard.press("ArrowRight")
    assert selected(root) == [0]  # the caret starts at the first token
    page.keyboard.press("ArrowRight")
    assert selected(root) == [1]
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Shift+ArrowLeft")  # shrinks back: the anchor stays at " Berg"
    assert selected(root) == [1, 2]
    page.keyboard.press("1")
    berg = TEXT.index("Berg")
    made = {(s["start"], s["end"]): s["label"] for s in spans_of(root)}
    assert made[(berg, TEXT.index("富士山") + 3)] == "Not Supported"

    page.keyboard.press("ArrowLeft")  # from the span just made (focused): the token before it
    assert selected(root) == [0]
    page.keyboard.press("Shift+ArrowLeft")  # at the start: stays
    page.keyboard.press("3")
    made = {(s["start"], s["end"]): s["label"] for s in spans_of(root)}
    assert made[(0, 3)] == "Supported" and len(made) == len(before) + 2

    legend = root.locator("button[data-action='caret-next']")
    assert legend.is_visible() and "←→" in legend.inner_text()  # the four keys, on one button of the legend
    assert "Shift+→ extends the selection" in legend.get_attribute("title")
