"""Span editor in Chromium: key press -> span drawn, and the save round trip.

Starts the e2e test app (tests/e2e/heatmap_app.py, `?case=edit&n=2000`: a 2,000-token
answer in the span editor, with probe suggestions) with `streamlit run` (the repo's
.streamlit/config.toml applies) and drives Debian's Chromium (/usr/bin/chromium) with
Playwright.

Key press -> drawn: the editor logs every handled key in `window.__probelensEdit` with the
event's timeStamp and performance.now() after a task posted from the next
requestAnimationFrame (i.e. after style, layout and paint of that frame). No server round
trip is involved: edits stay in the browser until a save. Measured like a person works:
select a token with a click, pause, press a label key (1 / 2 / 3 / 0), pause; also J
(focus the next span, scrolling it into view) and Ctrl+Z / Ctrl+Shift+Z.

Save round trip: Enter (save and next) -> setTriggerValue -> websocket -> the page's
on_save callback stores the spans (version + 1) -> script run -> the page shows the saved
JSON (a MutationObserver records performance.now() when it appears) and the editor gets
the new version.

    .venv/bin/python benchmarks/annotate_ui.py [--tokens 2000] [--presses 30] [--saves 10]

Timing is opt-in in the component (core/components/js/perf.js): the page turns it on with
`window.__probelensPerf = true` before the app loads.

Last line: `keypress_to_draw_ms=<label-key median> save_roundtrip_ms=<median>`.
Goals: < 50 ms and < 300 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
E2E = ROOT / "tests" / "e2e"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(E2E))

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, StreamlitApp  # noqa: E402

PAUSE_MS = 120  # between actions, like a (fast) person; lets the previous frame finish

WATCH_SAVES = """() => {
    window.__savesSeen = {};
    const seen = () => {
        for (const c of document.querySelectorAll('[data-testid=stCode]')) {
            const m = /"saves": (\\d+),/.exec(c.textContent);
            if (m && !(m[1] in window.__savesSeen)) window.__savesSeen[m[1]] = performance.now();
        }
    };
    new MutationObserver(seen).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else float("nan")


def summary(name: str, xs: list[float]) -> str:
    return (
        f"  {name:<28} n={len(xs):>3}  median {statistics.median(xs):6.1f} ms  p95 {pct(xs, 0.95):6.1f} ms  "
        f"max {max(xs):6.1f} ms"
    )


def edit_log(page) -> list[dict]:
    return page.evaluate("() => window.__probelensEdit || []")


def press_and_time(page, key: str) -> dict:
    before = len(edit_log(page))
    page.keyboard.press(key)
    page.wait_for_function(f"() => (window.__probelensEdit || []).length > {before}")
    page.wait_for_timeout(PAUSE_MS)
    return edit_log(page)[before]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=2000)
    ap.add_argument("--presses", type=int, default=30)
    ap.add_argument("--saves", type=int, default=10)
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    app = StreamlitApp(E2E / "heatmap_app.py")
    try:
        app.wait_ready()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.add_init_script("window.__probelensPerf = true")  # the component's timing is opt-in
            page.goto(app.url(case="edit", n=args.tokens, height=520, draft_key=f"bench-{uuid.uuid4().hex[:8]}"))
            root = page.locator(f".plh-root[data-spans][data-token-count='{args.tokens}']")
            root.wait_for(timeout=60_000)
            page.wait_for_timeout(800)  # let the first render settle
            mount = page.evaluate("() => window.__probelensPaint[0]")
            print(
                f"span editor, {args.tokens} tokens: mounted and painted in "
                f"{mount['t_painted'] - mount['t_data']:.0f} ms (DOM {mount['t_dom'] - mount['t_data']:.0f} ms)"
            )

            label_ms, label_js, click_ms = [], [], []
            keys = "1230"
            for k in range(args.presses):
                tok = root.locator(f".plh-text span[data-i='{2 + 4 * k}']")
                before = len(edit_log(page))
                tok.click()
                page.wait_for_function(f"() => (window.__probelensEdit || []).length > {before}")
                click_ms.append(edit_log(page)[before]["t_painted"] - edit_log(page)[before]["t_event"])
                page.wait_for_timeout(PAUSE_MS)
                e = press_and_time(page, keys[k % 4])
                label_ms.append(e["t_painted"] - e["t_event"])
                label_js.append(e["t_dom"] - e["t_event"])
            spans = len(page.evaluate("r => JSON.parse(r.getAttribute('data-spans'))", root.element_handle()))
            assert spans == args.presses, spans

            # spans all over the answer, then J through them (each scrolled into view)
            root.locator(".ple-num").fill("0.8")
            root.get_by_role("button", name="accept all ≥").click()
            page.wait_for_timeout(300)
            total = len(page.evaluate("r => JSON.parse(r.getAttribute('data-spans'))", root.element_handle()))
            root.focus()
            page.keyboard.press("Escape")
            page.wait_for_timeout(PAUSE_MS)
            j_ms = [(lambda e: e["t_painted"] - e["t_event"])(press_and_time(page, "j")) for _ in range(args.presses)]
            undo_ms = [(lambda e: e["t_painted"] - e["t_event"])(press_and_time(page, "Control+z")) for _ in range(10)]
            redo_ms = [
                (lambda e: e["t_painted"] - e["t_event"])(press_and_time(page, "Control+Shift+Z")) for _ in range(10)
            ]

            print(
                f"key press -> span drawn (event timeStamp -> after the next frame's paint), "
                f"{args.tokens} tokens, {spans}-{total} spans:"
            )
            print(summary("label key (1/2/3/0)", label_ms))
            print(summary("  of which JS handler", label_js))
            print(summary("click-select a token", click_ms))
            print(summary("J next span (+ scroll)", j_ms))
            print(summary("Ctrl+Z undo", undo_ms))
            print(summary("Ctrl+Shift+Z redo", redo_ms))

            # save round trips
            page.evaluate(WATCH_SAVES)
            trip, comp = [], []
            for s in range(1, args.saves + 1):
                tok = root.locator(f".plh-text span[data-i='{1 + 4 * (s % 30)}']")
                tok.click()
                page.wait_for_timeout(PAUSE_MS)
                page.keyboard.press("1" if s % 2 else "3")
                page.wait_for_timeout(PAUSE_MS)
                before = len(edit_log(page))
                page.keyboard.press("Enter")
                page.wait_for_function(f"() => window.__savesSeen && ('{s}' in window.__savesSeen)", timeout=20_000)
                page.wait_for_function(
                    f"r => r.getAttribute('data-base-version') === '{s}'", arg=root.element_handle(), timeout=20_000
                )
                t_enter = edit_log(page)[before]["t_event"]
                trip.append(page.evaluate(f"() => window.__savesSeen['{s}']") - t_enter)
                last = page.evaluate("() => window.__probelensPaint[window.__probelensPaint.length - 1]")
                comp.append(last["t_painted"] - t_enter)
                page.wait_for_timeout(300)
            print("save round trip (Enter -> on_save stored it -> rerun -> page shows the saved JSON):")
            print(summary("Enter -> saved JSON shown", trip))
            print(summary("Enter -> editor on new version", comp))
            browser.close()
    finally:
        app.stop()
    print(f"keypress_to_draw_ms={statistics.median(label_ms):.1f} save_roundtrip_ms={statistics.median(trip):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
