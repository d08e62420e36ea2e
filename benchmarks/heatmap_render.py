"""Token heatmap in Chromium: data-to-painted time and streamed token visibility delay.

Starts the e2e test app (tests/e2e/heatmap_app.py) with `streamlit run` (the repo's
.streamlit/config.toml applies, so runner.postScriptGC is off as in the real app) and
drives Debian's Chromium (/usr/bin/chromium) with Playwright.

Render: for 500 / 2,000 / 5,000 tokens, "cold" = a fresh page mounting the component,
"warm" = the same page re-rendering a new document after a full app rerun. Time is from
the component receiving its data (start of the JS call) to a task posted from the
next requestAnimationFrame, i.e. after style, layout and paint of that frame.

Stream: `?case=stream`, one token every 50 ms from a background thread, a fragment
polling every 0.1 s. Each token carries its server timestamp (epoch ms); the delay is
performance.timeOrigin + t_painted of the first paint that shows it, minus that time.

    .venv/bin/python benchmarks/heatmap_render.py [--reps 7] [--stream-tokens 200] [--poll 0.1]
                                                  [--no-gc-run] [--stream-only]

Timing is opt-in in the component (core/components/js/perf.js): every browser context
here turns it on with `window.__probelensPerf = true` before the app loads.

Last line: `paint_ms_5000=<cold median> visible_delay_ms=<per-token median>`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
E2E = ROOT / "tests" / "e2e"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(E2E))

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, StreamlitApp  # noqa: E402

SIZES = (500, 2000, 5000)
PERF_ON = "window.__probelensPerf = true"


def new_context(browser):
    """A browser context with the component's timing turned on."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.add_init_script(PERF_ON)
    return context


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def last_paint(page) -> dict:
    return page.evaluate("() => window.__probelensPaint[window.__probelensPaint.length - 1]")


def measure_cold(browser, app: StreamlitApp, n: int, reps: int) -> tuple[list[float], list[float]]:
    painted, dom = [], []
    for _ in range(reps):
        context = new_context(browser)
        page = context.new_page()
        page.goto(app.url(case=f"n{n}"))
        page.locator(f".plh-root[data-token-count='{n}']").wait_for(timeout=60_000)
        page.wait_for_function("() => (window.__probelensPaint || []).length > 0")
        e = last_paint(page)
        painted.append(e["t_painted"] - e["t_data"])
        dom.append(e["t_dom"] - e["t_data"])
        context.close()
    return painted, dom


def measure_warm(browser, app: StreamlitApp, n: int, reps: int) -> list[float]:
    context = new_context(browser)
    page = context.new_page()
    page.goto(app.url(case=f"n{n}"))
    page.locator(f".plh-root[data-token-count='{n}']").wait_for(timeout=60_000)
    page.wait_for_function("() => (window.__probelensPaint || []).length > 0")
    out = []
    for _ in range(reps):
        before = page.evaluate("() => window.__probelensPaint.length")
        page.get_by_role("button", name="re-render").click()
        page.wait_for_function(f"() => window.__probelensPaint.length > {before}", timeout=60_000)
        e = last_paint(page)
        assert e["kind"] == "full" and e["count"] == n, e
        out.append(e["t_painted"] - e["t_data"])
        page.wait_for_timeout(150)
    context.close()
    return out


def measure_stream(browser, app: StreamlitApp, total: int, poll: float = 0.1) -> dict:
    context = new_context(browser)
    page = context.new_page()
    page.goto(app.url(case="stream", total=total, interval=50, poll=poll))
    page.locator(".plh-root[data-token-count]").wait_for(timeout=60_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=stCaptionContainer]')]"
        ".some(c => c.textContent.includes('done'))",
        timeout=60_000 + total * 200,
    )
    page.wait_for_timeout(300)
    origin = page.evaluate("() => performance.timeOrigin")
    log = page.evaluate("() => window.__probelensPaint")
    mounts = page.evaluate("() => window.__probelensMounts")
    context.close()
    per_token, newest, append_ms = [], [], []
    for e in log:
        visible = origin + e["t_painted"]
        per_token += [visible - t for t in (e["produced_new"] or [])]
        if e["produced_at"] is not None and e["kind"] == "append":
            newest.append(visible - e["produced_at"])
        if e["kind"] == "append":
            append_ms.append(e["t_painted"] - e["t_data"])
    span_s = (log[-1]["t_painted"] - log[0]["t_painted"]) / 1000 if len(log) > 1 else 0
    return {
        "tokens": len(per_token),
        "updates": len(log),
        "mounts": mounts,
        "full": sum(e["kind"] == "full" for e in log),
        "span_s": span_s,
        "per_token": per_token,
        "newest": newest,
        "append_ms": append_ms,
    }


def report_stream(label: str, r: dict) -> None:
    pt, nw, ap = r["per_token"], r["newest"], r["append_ms"]
    rate = r["updates"] / r["span_s"] if r["span_s"] else float("nan")
    print(
        f"stream [{label}]: {r['tokens']} tokens in {r['updates']} updates ({rate:.1f}/s), "
        f"mounts={r['mounts']} full renders={r['full']}"
    )
    print(
        f"  per-token produced->visible: median {median(pt):.0f} ms, p90 {pct(pt, 0.9):.0f} ms, "
        f"min {min(pt, default=float('nan')):.0f} ms, max {max(pt, default=float('nan')):.0f} ms"
    )
    print(f"  newest token at each update: median {median(nw):.0f} ms")
    print(f"  component work per update (data->painted): median {median(ap):.1f} ms, p90 {pct(ap, 0.9):.1f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--stream-tokens", type=int, default=200)
    ap.add_argument("--no-gc-run", action="store_true", help="skip the stream run with runner.postScriptGC on")
    ap.add_argument("--poll", type=float, default=0.1, help="fragment poll interval in seconds (default 0.1)")
    ap.add_argument("--stream-only", action="store_true", help="skip the render sizes")
    args = ap.parse_args()
    if args.stream_only:
        print("(render sizes skipped)")
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    app = StreamlitApp(E2E / "heatmap_app.py")
    try:
        app.wait_ready()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            cold5000 = float("nan")
            if not args.stream_only:
                print(
                    f"render, data -> painted (median of {args.reps}; "
                    "cold = fresh page, warm = re-render after a full rerun)"
                )
            for n in () if args.stream_only else SIZES:
                painted, dom = measure_cold(browser, app, n, args.reps)
                warm = measure_warm(browser, app, n, args.reps)
                print(
                    f"  {n:>5} tokens: cold {median(painted):6.1f} ms (DOM built in {median(dom):5.1f} ms, "
                    f"max {max(painted):6.1f}), warm {median(warm):6.1f} ms (max {max(warm):6.1f})"
                )
                if n == 5000:
                    cold5000 = median(painted)
            stream = measure_stream(browser, app, args.stream_tokens, args.poll)
            report_stream(f"poll {args.poll} s, postScriptGC off (repo config)", stream)
            browser.close()
    finally:
        app.stop()

    if not args.no_gc_run:
        gc_app = StreamlitApp(E2E / "heatmap_app.py", ["--runner.postScriptGC", "true"])
        try:
            gc_app.wait_ready()
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                report_stream(
                    f"poll {args.poll} s, postScriptGC on (Streamlit default)",
                    measure_stream(browser, gc_app, args.stream_tokens, args.poll),
                )
                browser.close()
        finally:
            gc_app.stop()

    pt = stream["per_token"]
    print(
        f"delay = wait for the next {args.poll} s poll (mean {args.poll * 500:.0f} ms) + fragment run, websocket, "
        "React (effects run after its commit is painted) and the next frame; the component's own work "
        "is the 'per update' figure above"
    )
    print(f"paint_ms_5000={cold5000:.1f} visible_delay_ms={median(pt):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
