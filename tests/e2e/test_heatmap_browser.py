"""The token heatmap in a real Chromium against a running Streamlit test app.

Cases come from tests/e2e/heatmap_app.py (`?case=...`); their data from heatmap_cases.py,
so the tests compare what the browser shows with exactly what was sent.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from heatmap_cases import XSS_TOKENS, basic_case

from core.components.heatmap import (
    LABEL_KEYS,
    LABEL_LINE_STYLES,
    LINE_COLOURS,
    OUTCOMES,
    UNKNOWN_COLOR,
    heatmap_payload,
)
from tests.support.heatmap_reference import score_color, text_color, token_outcomes

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(),
        reason="/usr/bin/chromium is missing: apt-get install chromium to run browser tests",
    ),
]

ROOT_SEL = ".plh-root[data-token-count]"


def open_case(page, app, count: int | None = None, timeout: float = 30_000, **params):
    page.goto(app.url(**params))
    sel = ROOT_SEL if count is None else f".plh-root[data-token-count='{count}']"
    root = page.locator(sel)
    root.wait_for(timeout=timeout)
    return page.locator(".plh-root")


def rgb_to_hex(css: str) -> str:
    r, g, b = (int(x) for x in re.findall(r"\d+", css)[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def basic_payload():
    view, gold = basic_case()
    return view, heatmap_payload(view, threshold=0.5, gold_spans=gold)


def test_model_text_is_never_parsed_as_html(page, heatmap_app):
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    root = open_case(page, heatmap_app, count=len(XSS_TOKENS), case="xss")
    seen = root.evaluate(
        """root => ({
            texts: [...root.querySelectorAll('.plh-text span[data-i]')].map(s => s.textContent),
            childElements: [...root.querySelectorAll('.plh-text span[data-i]')]
                .reduce((a, s) => a + s.childElementCount, 0),
            injected: root.querySelectorAll('img, b, i, script, svg, style, iframe').length,
            anywhere: document.querySelectorAll('img[src="x"], svg[onload]').length,
            all: root.querySelector('.plh-text').textContent,
        })"""
    )
    assert seen["texts"] == XSS_TOKENS
    assert seen["all"] == "".join(XSS_TOKENS)
    assert seen["childElements"] == 0 and seen["injected"] == 0 and seen["anywhere"] == 0
    page.wait_for_timeout(700)  # an onerror/onload handler would have fired by now
    assert dialogs == []
    assert page.errors == []


def test_text_whitespace_and_empty_pieces_are_faithful(page, heatmap_app):
    view, _ = basic_payload()
    root = open_case(page, heatmap_app, count=len(view), case="basic")
    seen = root.evaluate(
        """root => {
            const box = root.querySelector('.plh-text');
            const spans = [...box.querySelectorAll('span[data-i]')];
            return {
                all: box.textContent, ws: getComputedStyle(box).whiteSpace,
                widths: spans.map(s => s.getBoundingClientRect().width),
                n: spans.length,
            };
        }"""
    )
    assert seen["all"] == "".join(view.texts)
    assert seen["ws"] == "pre-wrap" and seen["n"] == len(view)
    empty = [i for i, t in enumerate(view.texts) if t == ""]
    assert empty and all(seen["widths"][i] == 0 for i in empty)


def test_colours_and_outcomes_match_python(page, heatmap_app):
    view, payload = basic_payload()
    root = open_case(page, heatmap_app, count=len(view), case="basic")
    styles = root.evaluate(
        """root => [...root.querySelectorAll('.plh-text span[data-i]')].map(s => {
            const cs = getComputedStyle(s);
            return {bg: cs.backgroundColor, fg: cs.color, cls: s.className};
        })"""
    )
    outcomes = token_outcomes(payload)
    for i, st in enumerate(styles):
        score = payload["scores"][i]
        assert rgb_to_hex(st["bg"]) == score_color(score), (i, view.texts[i], score)
        assert rgb_to_hex(st["fg"]) == text_color(score), i
        want = outcomes[i]
        got = [c for c in st["cls"].split() if c.startswith("o-")]
        assert got == ([f"o-{want.lower()}"] if want else []), (i, view.texts[i], want, st["cls"])
    assert rgb_to_hex(styles[35]["bg"]) == UNKNOWN_COLOR  # an unscored piece
    legend = root.locator(".plh-legend").inner_text()
    for word in ("threshold 0.50", "not scored", "hallucinated", "TP", "FP", "FN"):
        assert word in legend
    for name, outcome in OUTCOMES.items():
        assert f"{name} {outcome.word}" in legend, name


def test_label_lines_and_outlines_are_the_python_definitions(page, heatmap_app):
    """Underlines and outlines as Chromium draws them: the colours, line styles and outlines
    defined in Python (heatmap_data), not a copy in the JS or CSS."""
    view, payload = basic_payload()
    root = open_case(page, heatmap_app, count=len(view), case="basic")
    drawn = root.evaluate(
        """root => [...root.querySelectorAll('.plh-text span[data-i]')].map(s => {
            const cs = getComputedStyle(s);
            return {cls: s.className, line: cs.textDecorationColor, style: cs.textDecorationStyle,
                    outline: cs.outlineColor, outlineStyle: cs.outlineStyle};
        })"""
    )
    by_key = {key: label for label, key in LABEL_KEYS.items()}
    seen_labels, seen_outcomes = set(), set()
    for i, d in enumerate(drawn):
        classes = d["cls"].split()
        tone = 2 if "ln2" in classes else 1 if "ln1" in classes else 0
        for c in classes:
            if c.startswith("g-") and c[2:] in by_key:
                label = by_key[c[2:]]
                assert rgb_to_hex(d["line"]) == LINE_COLOURS[tone][label], (i, label, tone)
                assert d["style"] == LABEL_LINE_STYLES[label], (i, label)
                seen_labels.add(label)
            if c.startswith("o-"):
                _width, style, colour = OUTCOMES[c[2:].upper()].outline.split()
                assert (d["outlineStyle"], rgb_to_hex(d["outline"])) == (style, colour), (i, c)
                seen_outcomes.add(c)
    assert seen_labels and seen_outcomes, (seen_labels, seen_outcomes)


def test_hover_shows_tooltip_with_id_score_and_visible_whitespace(page, heatmap_app):
    view, payload = basic_payload()
    root = open_case(page, heatmap_app, count=len(view), case="basic")
    tip = root.locator(".plh-tip")

    root.locator(".plh-text span[data-i='1']").hover()  # " city"
    tip.wait_for(state="visible")
    text = tip.inner_text()
    assert "␣city" in text and f"id {view.ids[1]}" in text and "0.050" in text
    assert f"{payload['logprobs'][1]:.3f}" in text and f"{payload['entropies'][1]:.3f}" in text

    root.locator(".plh-text span[data-i='15']").hover()  # "125", gold Not Supported (shown as "hallucinated")
    text = tip.inner_text()
    assert "125" in text and "0.930" in text and "gold\nhallucinated" in text and "TP" in text

    i_tab = view.texts.index("\t")
    root.locator(f".plh-text span[data-i='{i_tab}']").hover()
    assert "→" in tip.inner_text()

    # the "\n\n" token has no area of its own to point at: send the event directly
    i_nl = view.texts.index("\n\n")
    root.locator(f".plh-text span[data-i='{i_nl}']").dispatch_event("mouseover")
    assert "⏎⏎" in tip.inner_text()

    page.mouse.move(5, 5)
    tip.wait_for(state="hidden")


def window_paint_kinds(page) -> list[str]:
    return page.evaluate("() => window.__probelensPaint.map(e => e.kind)")


def test_timing_is_recorded_only_when_turned_on(page, heatmap_app):
    view, _ = basic_payload()
    root = open_case(page, heatmap_app, count=len(view), case="basic")
    page.wait_for_timeout(300)  # a paint record would be there by now
    assert page.evaluate("() => window.__probelensPaint === undefined")
    assert root.get_attribute("data-render-ms") is None and root.get_attribute("data-paint-ms") is None
    assert root.get_attribute("data-renders") == "1"  # state attributes are always there
    page.add_init_script("window.__probelensPerf = true")  # what the benchmarks do
    root = open_case(page, heatmap_app, count=len(view), case="basic")
    page.wait_for_function("() => (window.__probelensPaint || []).length > 0")
    assert window_paint_kinds(page) == ["full"]
    assert float(root.get_attribute("data-paint-ms")) > 0
    assert page.errors == []


def test_focus_scrolls_to_and_flashes_the_token(page, heatmap_app):
    view, _ = basic_payload()
    root = open_case(page, heatmap_app, count=len(view), case="basic", focus=27)
    tok = root.locator(".plh-text span[data-i='27']")
    assert "flash" in (tok.get_attribute("class") or "")
    tok.wait_for(state="visible")


def _stream_state(page):
    return page.evaluate(
        """() => {
            const host = document.querySelector('[data-testid=stBidiComponentIsolated]');
            const root = host && host.shadowRoot && host.shadowRoot.querySelector('.plh-root');
            const cap = [...document.querySelectorAll('[data-testid=stCaptionContainer]')]
                .map(c => c.textContent).join(' ');
            if (!root) return {count: -1, caption: cap};
            const spans = [...root.querySelectorAll('.plh-text span[data-i]')];
            return {
                count: Number(root.getAttribute('data-token-count')),
                renders: Number(root.getAttribute('data-renders')),
                appends: Number(root.getAttribute('data-appends')),
                mounts: window.__probelensMounts || 0,
                coloured: spans.filter(s => !s.classList.contains('unknown')).length,
                unknown: spans.filter(s => s.classList.contains('unknown')).length,
                caption: cap,
            };
        }"""
    )


def _sample_stream(page, timeout: float = 30.0) -> list[dict]:
    samples = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = _stream_state(page)
        samples.append(s)
        if "done" in s["caption"]:
            break
        page.wait_for_timeout(200)
    return samples


def test_stream_grows_in_place_with_the_same_key(page, heatmap_app):
    total = 60
    page.add_init_script("window.__probelensPerf = true")  # timing is opt-in (js/perf.js)
    page.goto(heatmap_app.url(case="stream", total=total, interval=50))
    page.locator(ROOT_SEL).first.wait_for(timeout=30_000)  # unkeyed remounts overlap briefly
    samples = _sample_stream(page)
    assert "done" in samples[-1]["caption"], samples[-1]
    while_running = [s["count"] for s in samples if "running" in s["caption"] and s["count"] > 0]
    growth = sum(1 for a, b in zip(while_running, while_running[1:]) if b > a)
    assert growth >= 3, while_running  # seen growing several times before the end
    assert all(b >= a for a, b in zip(while_running, while_running[1:])), while_running
    page.wait_for_function(
        f"() => document.querySelector('[data-testid=stBidiComponentIsolated]')"
        f".shadowRoot.querySelector('.plh-root').getAttribute('data-token-count') === '{total}'"
    )
    end = _stream_state(page)
    assert end["count"] == total and end["unknown"] == 0 and end["coloured"] == total  # late scores restyled
    # same key on every fragment run: one instance, one full render, then appends only
    paints = page.evaluate("() => window.__probelensPaint.map(e => e.kind[0] + e.count)")
    assert end["mounts"] == 1 and end["renders"] == 1 and end["appends"] >= 3, (end, paints)
    assert any(0 < s.get("coloured", 0) < total for s in samples), "coloured tokens while streaming"
    assert page.errors == []


def test_stream_without_key_remounts_every_update(page, heatmap_app):
    """Documents the pitfall: no key = new element identity per update = remount."""
    page.goto(heatmap_app.url(case="stream", total=30, interval=50, key="none"))
    page.locator(ROOT_SEL).first.wait_for(timeout=30_000)  # unkeyed remounts overlap briefly
    samples = _sample_stream(page)
    assert "done" in samples[-1]["caption"]
    page.wait_for_timeout(500)
    end = _stream_state(page)
    assert end["mounts"] >= 3 and end["appends"] == 0, end


def test_5000_tokens_render(page, heatmap_app):
    page.add_init_script("window.__probelensPerf = true")
    root = open_case(page, heatmap_app, count=5000, case="n5000")
    page.wait_for_function("() => (window.__probelensPaint || []).length > 0")
    seen = root.evaluate(
        """root => ({
            spans: root.querySelectorAll('.plh-text span[data-i]').length,
            chunks: root.querySelectorAll('.plh-text .plh-chunk').length,
            renderMs: Number(root.getAttribute('data-render-ms')),
            paintMs: window.__probelensPaint[window.__probelensPaint.length - 1].t_painted
                     - window.__probelensPaint[window.__probelensPaint.length - 1].t_data,
        })"""
    )
    print(f"5000 tokens: DOM {seen['renderMs']:.1f} ms, painted {seen['paintMs']:.1f} ms, {seen['chunks']} chunks")
    assert seen["spans"] == 5000 and seen["chunks"] > 10
    assert seen["paintMs"] < 1000  # a sanity bound; benchmarks/heatmap_render.py gives the figure
    last = root.locator(".plh-text span[data-i='4999']")
    last.scroll_into_view_if_needed()
    last.wait_for(state="visible")
    assert page.errors == []


def test_the_legend_threshold_outlines_tokens_without_a_rerun(page, heatmap_app):
    """Generate's heatmap: the legend's slider outlines every token at or over it, in the browser
    (the script does not run again), and counts them."""
    view, _ = basic_case()
    scores = [s for s in view.scores]
    expected = lambda t: sorted(
        i for i, s in enumerate(scores) if s is not None and s == s and s >= t and view.texts[i] != ""
    )
    root = open_case(page, heatmap_app, case="control", threshold=0.5)
    runs = page.get_by_text(re.compile(r"^runs \d+$")).inner_text()

    def outlined() -> list[int]:
        return sorted(int(i) for i in root.locator(".tok.over").evaluate_all("els => els.map(e => e.dataset.i)"))

    assert outlined() == expected(0.5) and expected(0.5)
    assert root.get_attribute("data-over-count") == str(len(expected(0.5)))
    slider = root.locator(".plh-thr-input")
    for value in (0.8, 0.2, 0.95):
        slider.fill(str(value))  # sets the value and fires "input", as a drag does
        assert root.get_attribute("data-threshold") == f"{value:.2f}"
        assert outlined() == expected(value), value
        text = root.locator(".plh-thr-text").inner_text()
        assert text.startswith(f"{len(expected(value))} token") and f"{value:.2f}" in text
        left = root.locator(".plh-thr").evaluate("el => el.style.left")
        assert float(left.rstrip("%")) == pytest.approx(value * 100)
    assert expected(0.2) != expected(0.95)
    page.wait_for_timeout(500)
    assert page.get_by_text(re.compile(r"^runs \d+$")).inner_text() == runs  # no rerun of the script
    assert page.errors == []
