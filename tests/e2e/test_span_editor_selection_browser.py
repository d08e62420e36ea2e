"""Token-snapped selections leave out the punctuation at their ends, in Chromium (issue #14, item 5).

A drag (or shift+click) that ends a few pixels into a following comma or full stop selects
the words without it: punctuation is trimmed like spaces (core.text.editing.selection_to_span
and its twin in js/spans.js), unless Alt (character precision) is held.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from heatmap_cases import EDIT_TEXTS, edit_case

from tests.support.heatmap_reference import token_selection_to_span
from tests.support.span_editor import CHARS_BOX, classes, drag_points, open_editor, shadow_eval, tok, wait_saves

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(),
        reason="/usr/bin/chromium is missing: apt-get install chromium to run browser tests",
    ),
]

TEXT = "".join(EDIT_TEXTS)


def mid(box: dict, dx: float) -> tuple[float, float]:
    return box["x"] + dx, box["y"] + box["height"] / 2


def selection_text(root) -> str:
    a, b = map(int, root.get_attribute("data-selection").split("-"))
    return TEXT[a:b]


def alt_drag(page, a: tuple[float, float], b: tuple[float, float]) -> None:
    page.keyboard.down("Alt")
    drag_points(page, a, b, steps=4)
    page.keyboard.up("Alt")


# --- item 5: punctuation is trimmed from token-snapped selections ------------------------------------


def test_a_drag_ending_in_a_following_full_stop_leaves_the_stop_out(page, heatmap_app):
    view, _ = edit_case()
    root = open_editor(page, heatmap_app)
    dr, sato = EDIT_TEXTS.index(" Dr"), EDIT_TEXTS.index(" Sato")
    stop = sato + 1
    assert EDIT_TEXTS[stop] == "."
    b_dr, b_stop = tok(root, dr).bounding_box(), tok(root, stop).bounding_box()
    assert b_stop["width"] < 8  # a narrow token: easy to touch by accident
    drag_points(page, mid(b_dr, 3), mid(b_stop, b_stop["width"] / 2))
    assert all("sel" in classes(root, i) for i in range(dr, stop + 1))  # drawn over the tokens touched ...
    assert selection_text(root) == "Dr. Sato"  # ... selected without the trailing "."
    assert token_selection_to_span(view, dr, stop) == (TEXT.index("Dr. Sato"), TEXT.index("Dr. Sato") + 8)
    assert "«Dr. Sato»" in root.locator(".ple-status").inner_text()
    page.keyboard.press("1")

    # leading and trailing brackets: shift+click from "(" to ")" around the emoji
    opening, closing = EDIT_TEXTS.index(" ("), EDIT_TEXTS.index(")")
    tok(root, opening).click()
    assert selection_text(root) == "("  # punctuation alone is still selectable
    tok(root, closing).click(modifiers=["Shift"])
    assert selection_text(root) == "🗻"
    page.keyboard.press("3")

    # Alt (character precision) keeps exactly what was dragged over, the stop included
    hours = EDIT_TEXTS.index(" Stunden")
    end = hours + 1
    assert EDIT_TEXTS[end] == "."
    a = shadow_eval(page, CHARS_BOX, [hours, 1, 2])
    b = shadow_eval(page, CHARS_BOX, [end, 0, 1])
    alt_drag(page, (a["x"] + 1, (a["y"] + a["b"]) / 2), (b["r"] - 0.5, (b["y"] + b["b"]) / 2))
    page.wait_for_function(
        "() => document.querySelector('[data-testid=stBidiComponentIsolated]')"
        ".shadowRoot.querySelector('.plh-root').getAttribute('data-selection') !== ''"
    )
    assert selection_text(root) == "Stunden."
    page.keyboard.press("0")

    page.keyboard.press("Enter")
    got = wait_saves(page, 1)  # what the component returned
    assert [(TEXT[s["start"] : s["end"]], s["label"]) for s in got["spans"]] == [
        ("🗻", "Supported"),
        ("Dr. Sato", "Not Supported"),
        ("Stunden.", "N/A"),
    ]
    assert page.errors == []
