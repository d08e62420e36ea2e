"""The span editor (token heatmap, mode="edit") in a real Chromium against the test app.

`?case=edit` in tests/e2e/heatmap_app.py: an answer with emoji / CJK / astral characters
before the spans made here, so code points and UTF-16 units differ; the page prints the
last save as `SAVED {json}` and plays the database (version + 1 per save, conflicts).
The editor exposes its state on the root element (`data-spans` in code points,
`data-focus`, `data-selection`, ...), which the tests read next to the drawn classes.
The JS span rules are compared with core.text.editing in tests/test_components.py.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest
from heatmap_cases import EDIT_TEXTS, JUDGE_NOTE, edit_case, their_spans

from core.base.types import Span
from core.text.editing import Suggestion, accept_suggestions, add_span
from tests.support.heatmap_reference import dom_selection_to_span, token_selection_to_span
from tests.support.span_editor import classes, open_editor, spans_of, tok

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(),
        reason="/usr/bin/chromium is missing: apt-get install chromium to run browser tests",
    ),
]

TEXT = "".join(EDIT_TEXTS)
LABEL_CLS = {"Not Supported": "g-ns", "Insufficient Information": "g-ii", "Supported": "g-s", "N/A": "g-na"}


# --- helpers ---------------------------------------------------------------------------------


def token_of(word_start: int) -> int:
    pos = 0
    for i, t in enumerate(EDIT_TEXTS):
        if pos <= word_start < pos + len(t):
            return i
        pos += len(t)
    raise ValueError(word_start)


def span_at(word: str, label: str, note: str | None = None) -> dict:
    start = TEXT.index(word)
    return {"start": start, "end": start + len(word), "label": label, "note": note}


def drag(page, root, a: int, b: int) -> None:
    ba, bb = tok(root, a).bounding_box(), tok(root, b).bounding_box()
    page.mouse.move(ba["x"] + 3, ba["y"] + ba["height"] / 2)
    page.mouse.down()
    page.mouse.move(bb["x"] + bb["width"] - 3, bb["y"] + bb["height"] / 2, steps=6)
    page.mouse.up()


def saved(page) -> dict:
    text = page.locator("[data-testid=stCode]", has_text="SAVED").inner_text()
    return json.loads(text.split("SAVED ", 1)[1])


def wait_saves(page, n: int, timeout: float = 15_000) -> dict:
    page.wait_for_function(
        """n => [...document.querySelectorAll('[data-testid=stCode]')]
              .some(c => c.textContent.includes('"saves": ' + n + ','))""",
        arg=n,
        timeout=timeout,
    )
    return saved(page)


def runs(page) -> int:
    cap = page.locator("[data-testid=stCaptionContainer]", has_text="runs").inner_text()
    return int(re.search(r"runs (\d+)", cap).group(1))


def char_point(page, i: int, u16: int, side: str) -> tuple[float, float]:
    """Viewport point just inside the character at UTF-16 offset `u16` of token i
    (side="start": its left edge; "end": the right edge of the character ending there)."""
    return tuple(
        page.evaluate(
            """([i, u16, side]) => {
            const sr = document.querySelector('[data-testid=stBidiComponentIsolated]').shadowRoot;
            const node = sr.querySelector(`.plh-text span[data-i='${i}']`).firstChild;
            const text = node.data;
            const r = document.createRange();
            if (side === 'start') {
                const w = text.codePointAt(u16) > 0xffff ? 2 : 1;
                r.setStart(node, u16); r.setEnd(node, u16 + w);
                const b = r.getBoundingClientRect();
                return [b.left + Math.min(2, b.width / 4), b.top + b.height / 2];
            }
            const w = (text.charCodeAt(u16 - 1) & 0xfc00) === 0xdc00 ? 2 : 1;
            r.setStart(node, u16 - w); r.setEnd(node, u16);
            const b = r.getBoundingClientRect();
            return [b.right - Math.min(2, b.width / 4), b.top + b.height / 2];
        }""",
            [i, u16, side],
        )
    )


def dom_selection(page) -> dict:
    return page.evaluate(
        """() => {
            const sr = document.querySelector('[data-testid=stBidiComponentIsolated]').shadowRoot;
            const r = sr.getSelection().getRangeAt(0);
            const tokenOf = n => Number((n.nodeType === 3 ? n.parentNode : n).dataset.i);
            return {a: tokenOf(r.startContainer), ua: r.startOffset, b: tokenOf(r.endContainer), ub: r.endOffset,
                    text: r.toString()};
        }"""
    )


# --- selection, labels, undo / redo, save ------------------------------------------------------


def test_drag_label_undo_redo_and_save_in_code_points(page, heatmap_app):
    view, _ = edit_case()
    root = open_editor(page, heatmap_app)
    # the key legend is on the toolbar buttons (one per key) and nowhere else
    # (tests/e2e/test_span_editor_drawing_browser.py checks every key)
    for key in ("1", "Ctrl+Z", "Enter", "Tab"):
        assert root.locator(".ple-bar kbd", has_text=re.compile(rf"^{re.escape(key)}$")).count() == 1, key
    assert root.locator("button", has_text="Save & next").locator("kbd").inner_text() == "Enter"
    assert root.locator(".ple-bar button[data-action^='label-'] kbd").all_inner_texts() == ["1", "2", "3", "0"]
    first, last = EDIT_TEXTS.index(" Dr"), EDIT_TEXTS.index(" Sato")
    want = span_at("Dr. Sato", "Not Supported")
    # UTF-16 would put the span 3 units later (🗻, 𠮷 and the two astral halves of 👩‍🔬)
    utf16_start = len(TEXT[: want["start"]].encode("utf-16-le")) // 2
    assert utf16_start - want["start"] == 4
    assert token_selection_to_span(view, first, last) == (want["start"], want["end"])
    runs_before = runs(page)

    drag(page, root, first, last)
    assert root.get_attribute("data-selection") == f"{want['start']}-{want['end']}"
    assert all("sel" in classes(root, i) for i in range(first, last + 1))
    page.keyboard.press("1")
    assert spans_of(root) == [want]
    drawn = [i for i in range(len(EDIT_TEXTS)) if "g-ns" in classes(root, i)]
    assert drawn == list(range(first, last + 1))
    assert "sel" not in classes(root, first) and "fspan" in classes(root, first)

    page.keyboard.press("Control+z")
    assert spans_of(root) == []
    assert not any("g-ns" in classes(root, i) for i in range(first, last + 1))
    page.keyboard.press("Control+Shift+Z")
    assert spans_of(root) == [want]
    assert all("g-ns" in classes(root, i) for i in range(first, last + 1))
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+y")  # the other redo
    assert spans_of(root) == [want]
    assert runs(page) == runs_before, "no Streamlit rerun per click or key"

    page.keyboard.press("Enter")
    got = wait_saves(page, 1)
    assert got["spans"] == [want]
    assert got["base_version"] == 0 and got["next"] is True and got["draft_key"] == "test-edit-0"
    assert TEXT[got["spans"][0]["start"] : got["spans"][0]["end"]] == "Dr. Sato"
    page.wait_for_function(
        "() => document.querySelector('[data-testid=stBidiComponentIsolated]')"
        ".shadowRoot.querySelector('.plh-root').getAttribute('data-base-version') === '1'"
    )
    assert root.get_attribute("data-dirty") == "0" and spans_of(root) == [want]
    # the Save button: next = false
    tok(root, EDIT_TEXTS.index(" 8")).click()
    page.keyboard.press("3")
    root.locator("button[data-action='save']").click()
    got = wait_saves(page, 2)
    assert got["next"] is False and got["base_version"] == 1
    assert got["spans"] == [want, span_at("8", "Supported")]
    assert page.errors == []


def test_shift_click_selects_from_the_anchor_token(page, heatmap_app):
    root = open_editor(page, heatmap_app)
    a, b = EDIT_TEXTS.index(" 3776"), EDIT_TEXTS.index(" hoch")
    tok(root, a).click()
    tok(root, b).click(modifiers=["Shift"])
    want = span_at("3776 m hoch", "Supported")
    assert root.get_attribute("data-selection") == f"{want['start']}-{want['end']}"
    page.keyboard.press("3")
    assert spans_of(root) == [want] and root.get_attribute("data-focus") == "span:0"
    page.keyboard.press("Escape")  # no focus
    # the new span wins over an overlapping one (core.editing.add_span): relabel a part
    tok(root, EDIT_TEXTS.index(" m")).click()  # first click focuses the span
    assert root.get_attribute("data-focus") == "span:0"
    tok(root, EDIT_TEXTS.index(" m")).click()  # a second click selects the token
    page.keyboard.press("1")
    expected = add_span([Span(**want)], Span(TEXT.index(" m") + 1, TEXT.index(" m") + 2, "Not Supported"), text=TEXT)
    assert spans_of(root) == [{"start": s.start, "end": s.end, "label": s.label, "note": s.note} for s in expected]
    assert len(expected) == 3  # split in two around it
    assert page.errors == []


def test_alt_drag_selects_exact_characters(page, heatmap_app):
    view, _ = edit_case()
    root = open_editor(page, heatmap_app)
    i = EDIT_TEXTS.index(" Besteigung")
    x0, y0 = char_point(page, i, 1, "start")
    x1, y1 = char_point(page, i, len(" Besteig"), "end")
    page.keyboard.down("Alt")
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=6)
    page.mouse.up()
    page.keyboard.up("Alt")
    start = TEXT.index("Besteigung")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=stBidiComponentIsolated]')"
        ".shadowRoot.querySelector('.plh-root').getAttribute('data-selection') !== ''"
    )
    assert root.get_attribute("data-selection") == f"{start}-{start + len('Besteig')}"
    sel = dom_selection(page)
    assert sel["text"] == "Besteig"
    assert dom_selection_to_span(view.texts, sel["a"], sel["ua"], sel["b"], sel["ub"]) == (start, start + 7)
    page.keyboard.press("2")
    assert spans_of(root) == [{"start": start, "end": start + 7, "label": "Insufficient Information", "note": None}]

    # an astral character (2 UTF-16 units) inside a CJK token: exactly that one code point
    j = EDIT_TEXTS.index(" 𠮷野")
    x0, y0 = char_point(page, j, 1, "start")
    x1, y1 = char_point(page, j, 3, "end")
    page.keyboard.down("Alt")
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()
    page.keyboard.up("Alt")
    k = TEXT.index("𠮷")
    page.wait_for_function(
        f"() => document.querySelector('[data-testid=stBidiComponentIsolated]')"
        f".shadowRoot.querySelector('.plh-root').getAttribute('data-selection') === '{k}-{k + 1}'"
    )
    sel = dom_selection(page)
    assert (sel["ua"], sel["ub"]) == (1, 3)  # UTF-16 in the DOM ...
    assert dom_selection_to_span(view.texts, sel["a"], sel["ua"], sel["b"], sel["ub"]) == (k, k + 1)  # ... 1 code point
    page.keyboard.press("0")
    assert {"start": k, "end": k + 1, "label": "N/A", "note": None} in spans_of(root)

    # the "exact chars" toggle does the same without Alt
    root.get_by_role("button", name=re.compile("exact chars")).click()
    i = EDIT_TEXTS.index(" Stunden")
    x0, y0 = char_point(page, i, 1, "start")
    x1, y1 = char_point(page, i, 5, "end")
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()
    s = TEXT.index("Stunden")
    page.wait_for_function(
        f"() => document.querySelector('[data-testid=stBidiComponentIsolated]')"
        f".shadowRoot.querySelector('.plh-root').getAttribute('data-selection') === '{s}-{s + 4}'"
    )
    assert page.errors == []


# --- focus, notes, suggestions -------------------------------------------------------------------


def test_j_k_move_the_focus_and_n_adds_a_note(page, heatmap_app):
    root = open_editor(page, heatmap_app)
    for word, key in (("Berg", "3"), ("1707", "1"), ("Stunden", "2")):
        tok(root, token_of(TEXT.index(word))).click()
        page.keyboard.press(key)
    page.keyboard.press("Escape")  # clear the focus
    assert root.get_attribute("data-focus") == ""
    berg, year, hours = (token_of(TEXT.index(w)) for w in ("Berg", "1707", "Stunden"))
    page.keyboard.press("j")
    assert root.get_attribute("data-focus") == "span:0" and "fspan" in classes(root, berg)
    page.keyboard.press("j")
    assert root.get_attribute("data-focus") == "span:1" and "fspan" in classes(root, year)
    assert "fspan" not in classes(root, berg)
    page.keyboard.press("j")
    page.keyboard.press("j")  # stays on the last one
    assert root.get_attribute("data-focus") == "span:2" and "fspan" in classes(root, hours)
    page.keyboard.press("k")
    assert root.get_attribute("data-focus") == "span:1"

    page.keyboard.press("n")
    note = root.locator(".ple-note-input")
    note.wait_for(state="visible")
    note.type("<img src=x onerror=alert(1)> seen in the source")
    assert spans_of(root)[1]["note"] is None  # nothing typed reached the editor's keys
    note.press("Enter")
    assert spans_of(root)[1]["note"] == "<img src=x onerror=alert(1)> seen in the source"
    status = root.locator(".ple-status").inner_text()
    assert "<img src=x onerror=alert(1)> seen in the source" in status  # shown as text
    assert root.locator("img").count() == 0
    page.keyboard.press("Backspace")  # the focus is back on the editor: delete the span
    assert [s["label"] for s in spans_of(root)] == ["Supported", "Insufficient Information"]
    page.keyboard.press("Control+z")
    assert spans_of(root)[1]["note"] == "<img src=x onerror=alert(1)> seen in the source"
    assert page.errors == []


def test_tab_cycles_suggestions_a_accepts_r_rejects(page, heatmap_app):
    _, sugs = edit_case()
    root = open_editor(page, heatmap_app)
    assert root.get_attribute("data-suggestions-shown") == "4"
    first = token_of(sugs[0]["start"])
    assert "sug" in classes(root, first) and "g-ns" not in classes(root, first)
    root.focus()
    page.keyboard.press("Tab")
    assert root.get_attribute("data-focus") == "sug:0" and "fsug" in classes(root, first)
    page.keyboard.press("Shift+Tab")
    assert root.get_attribute("data-focus") == "sug:3"
    page.keyboard.press("Tab")
    tok(root, first).hover()
    assert "0.910" in root.locator(".plh-tip").inner_text()  # the score in the tooltip
    page.keyboard.press("a")
    assert spans_of(root) == [
        {"start": sugs[0]["start"], "end": sugs[0]["end"], "label": "Not Supported", "note": None}
    ]
    assert "sug" not in classes(root, first) and "g-ns" in classes(root, first)
    assert root.get_attribute("data-suggestions-shown") == "3"
    assert root.get_attribute("data-focus") == "sug:1"  # on to the next suggestion
    page.keyboard.press("r")
    assert root.get_attribute("data-suggestions-shown") == "2" and len(spans_of(root)) == 1
    assert "sug" not in classes(root, token_of(sugs[1]["start"]))
    page.keyboard.press("Control+z")  # undo the accept: its suggestion is shown again
    assert spans_of(root) == [] and root.get_attribute("data-suggestions-shown") == "3"
    root.get_by_role("button", name=re.compile("show 1 rejected")).click()
    assert root.get_attribute("data-suggestions-shown") == "4"
    assert page.errors == []


def test_bulk_accept_over_a_score_skips_overlaps(page, heatmap_app):
    _, sugs = edit_case()
    root = open_editor(page, heatmap_app)
    dr = EDIT_TEXTS.index(" Dr")
    tok(root, dr).click()
    page.keyboard.press("3")  # "Dr" supported: the "Dr. Sato" suggestion overlaps it
    root.locator(".ple-num").fill("0.5")
    root.get_by_role("button", name=re.compile("accept all")).click()
    mine = [Span(TEXT.index("Dr"), TEXT.index("Dr") + 2, "Supported")]
    expected = accept_suggestions(mine, [Suggestion(**s) for s in sugs], 0.5)
    got = spans_of(root)
    assert got == [{"start": s.start, "end": s.end, "label": s.label, "note": s.note} for s in expected]
    assert [TEXT[s["start"] : s["end"]] for s in got] == ["3776 m", "1707", "Dr"]  # not 8 Stunden (0.35)
    assert root.get_attribute("data-suggestions-shown") == "1"
    page.keyboard.press("Control+z")
    assert len(spans_of(root)) == 1  # one undo step
    assert page.errors == []


# --- focus, drafts, conflicts ------------------------------------------------------------------------


def test_keys_only_while_the_editor_has_focus(page, heatmap_app):
    root = open_editor(page, heatmap_app)
    tok(root, 1).click()
    before = runs(page)
    page.keyboard.press("r")  # Streamlit's "rerun" shortcut must not see the editor's keys
    page.wait_for_timeout(600)
    assert runs(page) == before
    height = root.bounding_box()["height"]
    box = page.get_by_label("Another input")
    box.click()
    assert root.bounding_box()["height"] == height  # losing the keys moves nothing below the editor
    box.type("1023 J K")
    page.keyboard.press("Backspace")
    assert box.input_value() == "1023 J "
    assert spans_of(root) == [] and root.get_attribute("data-focus") == ""
    assert page.errors == []


def test_draft_goes_to_the_server_and_survives_a_reload(page, heatmap_app):
    root = open_editor(page, heatmap_app, draft_key="reload-test")
    for word, key in (("Berg", "3"), ("1707", "1")):
        tok(root, token_of(TEXT.index(word))).click()
        page.keyboard.press(key)
    want = [span_at("Berg", "Supported"), span_at("1707", "Not Supported")]
    assert spans_of(root) == want
    # debounced: one draft to the server about a second after the last edit
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=stCode]')].some(c => c.textContent.startsWith('DRAFT {'))",
        timeout=10_000,
    )
    draft = json.loads(page.locator("[data-testid=stCode]", has_text="DRAFT").inner_text().split("DRAFT ", 1)[1])
    assert draft["spans"] == want and draft["base_version"] == 0 and draft["draft_key"] == "reload-test"
    stored = json.loads(page.evaluate("() => localStorage.getItem('reload-test')"))
    assert stored["spans"] == want and stored["base_version"] == 0

    page.reload()
    root = page.locator(".plh-root[data-spans]")
    root.wait_for(timeout=30_000)
    assert spans_of(root) == want  # the server knows nothing (a new session): the browser did it
    assert root.get_attribute("data-draft-restored") == "1"
    assert "Draft restored" in root.locator(".ple-draft").inner_text()
    assert all("g-s" in classes(root, i) for i in [token_of(TEXT.index("Berg"))])
    page.keyboard.press("Control+z")  # back to the saved (empty) spans
    assert spans_of(root) == []
    page.keyboard.press("Control+Shift+z")
    root.get_by_role("button", name="discard draft").click()
    assert spans_of(root) == [] and page.evaluate("() => localStorage.getItem('reload-test')") is None
    assert page.errors == []


def test_a_draft_of_another_version_is_offered_not_applied(page, heatmap_app):
    stored = {"v": 1, "base_version": 5, "saved_at": 0, "spans": [span_at("Stunden", "Not Supported")]}
    page.add_init_script(f"localStorage.setItem('old-draft', {json.dumps(json.dumps(stored))})")
    root = open_editor(page, heatmap_app, draft_key="old-draft")
    note = root.locator(".ple-draft")
    note.wait_for(state="visible")
    assert "version 5" in note.inner_text() and "this is version 0" in note.inner_text()
    assert spans_of(root) == []  # not applied silently
    note.get_by_role("button", name="restore it").click()
    assert spans_of(root) == stored["spans"] and root.get_attribute("data-base-version") == "0"
    page.keyboard.press("Control+z")
    assert spans_of(root) == []
    assert page.errors == []


def test_conflict_shows_theirs_and_keeps_local_edits(page, heatmap_app):
    view, _ = edit_case()
    root = open_editor(page, heatmap_app)
    tok(root, token_of(TEXT.index("1707"))).click()
    page.keyboard.press("1")
    mine = [span_at("1707", "Not Supported")]
    page.get_by_role("button", name="Simulate another save").click()  # bob saves version 1
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=stCaptionContainer]')]"
        ".some(c => c.textContent.includes('version 1'))"
    )
    assert spans_of(root) == mine  # a rerun does not touch the local edits
    root.focus()
    page.keyboard.press("Enter")  # saved on version 0: refused, the page passes a conflict
    banner = root.locator(".ple-conflict")
    banner.wait_for(state="visible", timeout=15_000)
    assert "bob saved version 1" in banner.inner_text()
    page.wait_for_function(  # the app's own record of the refused save may be drawn a moment after the banner
        """() => [...document.querySelectorAll('[data-testid=stCode]')]
              .some(c => c.textContent.includes('"conflicts": 1'))""",
        timeout=15_000,
    )
    assert saved(page)["conflicts"] == 1 and saved(page)["saves"] == 0
    assert spans_of(root) == mine and root.get_attribute("data-dirty") == "1"
    assert "unsaved changes" in root.locator(".ple-state").inner_text()  # not "saving…"
    assert "not saved" in root.locator(".ple-msg").inner_text()

    berg = token_of(TEXT.index("Berg"))
    assert "t-s" not in classes(root, berg)
    banner.get_by_role("button", name="show theirs").click()
    assert "t-s" in classes(root, berg) and "g-s" not in classes(root, berg)  # theirs, not mine
    year = token_of(TEXT.index("1707"))
    assert "g-ns" in classes(root, year) and not any(c.startswith("t-") for c in classes(root, year))

    banner.get_by_role("button", name="take theirs").click()
    assert spans_of(root) == their_spans(view)
    page.keyboard.press("Control+z")  # mine again
    assert spans_of(root) == mine
    banner.get_by_role("button", name="keep mine").click()
    assert root.get_attribute("data-base-version") == "1"
    page.keyboard.press("Enter")
    got = wait_saves(page, 1)
    assert got["base_version"] == 1 and got["spans"] == mine
    banner.wait_for(state="hidden")
    assert page.errors == []


# --- long answers ----------------------------------------------------------------------------------


def _timed_press(page, key: str, pause_ms: int = 100) -> float:
    """Press `key` like a person (a pause before the next action); key event -> painted, ms."""
    before = page.evaluate("() => (window.__probelensEdit || []).length")
    page.keyboard.press(key)
    page.wait_for_function(f"() => (window.__probelensEdit || []).length > {before}")
    page.wait_for_timeout(pause_ms)
    e = page.evaluate(f"() => window.__probelensEdit[{before}]")
    return e["t_painted"] - e["t_event"]


def test_2000_tokens_key_press_draws_under_50_ms(page, heatmap_app):
    page.add_init_script("window.__probelensPerf = true")  # timing is opt-in (js/perf.js)
    root = open_editor(page, heatmap_app, n=2000, height=420)
    assert root.get_attribute("data-token-count") == "2000"
    page.wait_for_timeout(500)  # the first render settles
    label = []
    for k in range(10):
        tok(root, 2 + 3 * k).click()
        page.wait_for_timeout(100)
        label.append(_timed_press(page, "1230"[k % 4]))
    assert len(spans_of(root)) == 10
    others = [_timed_press(page, key) for key in ("Escape", "j", "j", "j", "k", "Control+z", "Control+Shift+Z")]
    print(
        f"2000 tokens, key -> drawn: label median {statistics.median(label):.1f} ms, max {max(label):.1f} ms; "
        f"J/K/undo/redo max {max(others):.1f} ms"
    )
    assert statistics.median(label) < 50 and max(label) < 50, label
    assert max(others) < 50, others

    # J reaches a span far down the answer and scrolls it into view
    root.locator(".ple-num").fill("0.8")
    root.get_by_role("button", name=re.compile("accept all")).click()
    spans = spans_of(root)
    assert len(spans) > 20
    root.focus()
    for _ in range(len(spans)):
        page.keyboard.press("j")
    assert root.get_attribute("data-focus") == f"span:{len(spans) - 1}"
    last = root.locator(".plh-text .tok.fspan").first
    box, tb = root.locator(".plh-text").bounding_box(), last.bounding_box()
    assert box["y"] <= tb["y"] and tb["y"] + tb["height"] <= box["y"] + box["height"] + 1
    assert page.errors == []


def test_a_judges_suggestion_is_accepted_with_its_label_and_note(page, heatmap_app):
    _, sugs = edit_case()
    root = open_editor(page, heatmap_app, judge=1)
    first = token_of(sugs[0]["start"])
    root.focus()
    page.keyboard.press("Tab")
    tok(root, first).hover()
    tip = root.locator(".plh-tip").inner_text()
    assert "gpt: Supported score 1.000" in tip and JUDGE_NOTE in tip  # the note as text
    assert root.locator("img").count() == 0
    page.keyboard.press("a")
    assert spans_of(root)[0] == {
        "start": sugs[0]["start"],
        "end": sugs[0]["end"],
        "label": "Supported",
        "note": JUDGE_NOTE,
    }
    assert page.errors == []
