"""Helpers for browser tests of the span editor (`?case=edit` of tests/e2e/heatmap_app.py).

The editor lives in the component's shadow root; Playwright locators pierce it, and
`shadow_eval` runs a function on its `.plh-root` for what locators cannot read
(computed styles, ranges, several boxes at once).
"""

from __future__ import annotations

import json
from typing import Any

ISOLATED = "[data-testid=stBidiComponentIsolated]"


def open_editor(page, app, **params: object):
    """Open the editor case and wait for it; returns the `.plh-root` locator."""
    page.goto(app.url(case="edit", **params))
    page.locator(".plh-root[data-spans]").wait_for(timeout=60_000)
    return page.locator(".plh-root")


def tok(root, i: int):
    """Token i's element."""
    return root.locator(f".plh-text span[data-i='{i}']")


def classes(root, i: int) -> set[str]:
    """Token i's classes."""
    return set((tok(root, i).get_attribute("class") or "").split())


def drag_tokens(page, root, first: int, last: int) -> None:
    """Drag the mouse from token `first` to token `last` (scrolled into view first: the editor
    may sit below the Annotate queue)."""
    root.locator(f".plh-text span[data-i='{first}']").scroll_into_view_if_needed()
    page.wait_for_timeout(200)
    a = root.locator(f".plh-text span[data-i='{first}']").bounding_box()
    b = root.locator(f".plh-text span[data-i='{last}']").bounding_box()
    page.mouse.move(a["x"] + 2, a["y"] + a["height"] / 2)
    page.mouse.down()
    page.mouse.move(b["x"] + b["width"] - 2, b["y"] + b["height"] / 2, steps=6)
    page.mouse.up()


def spans_of(root) -> list[dict]:
    """The editor's spans (code points), from its `data-spans` attribute."""
    return json.loads(root.get_attribute("data-spans"))


def token_at(texts: list[str], pos: int) -> int:
    """The token holding code point `pos` of "".join(texts)."""
    start = 0
    for i, t in enumerate(texts):
        if start <= pos < start + len(t):
            return i
        start += len(t)
    raise ValueError(pos)


def drag_points(page, a: tuple[float, float], b: tuple[float, float], steps: int = 6) -> None:
    """Press at viewport point `a`, move to `b`, release."""
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move(*b, steps=steps)
    page.mouse.up()


def saved(page) -> dict:
    """What the test app printed as its last save (`SAVED {json}`)."""
    text = page.locator("[data-testid=stCode]", has_text="SAVED").inner_text()
    return json.loads(text.split("SAVED ", 1)[1])


def wait_saves(page, n: int, timeout: float = 15_000) -> dict:
    """Wait until the app has stored `n` saves; returns the last one."""
    page.wait_for_function(
        """n => [...document.querySelectorAll('[data-testid=stCode]')]
              .some(c => c.textContent.includes('"saves": ' + n + ','))""",
        arg=n,
        timeout=timeout,
    )
    return saved(page)


def shadow_eval(page, fn: str, arg: Any = None) -> Any:
    """Run the JS function `fn(root, arg)` on the editor's `.plh-root` inside its shadow root."""
    return page.evaluate(
        f"""arg => {{
            const root = document.querySelector('{ISOLATED}').shadowRoot.querySelector('.plh-root');
            return ({fn})(root, arg);
        }}""",
        arg,
    )


def wait_attr(page, name: str, value: str, timeout: float = 10_000) -> None:
    """Wait until the editor root's attribute `name` equals `value`."""
    page.wait_for_function(
        f"""([name, value]) => document.querySelector('{ISOLATED}').shadowRoot
              .querySelector('.plh-root').getAttribute(name) === value""",
        arg=[name, value],
        timeout=timeout,
    )


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two CSS colours ("#rrggbb" or "rgb(r, g, b)")."""

    def channels(c: str) -> list[float]:
        c = c.strip()
        if c.startswith("#"):
            return [int(c[k : k + 2], 16) / 255 for k in (1, 3, 5)]
        return [float(x) / 255 for x in c[c.index("(") + 1 : c.index(")")].split(",")[:3]]

    def luminance(c: str) -> float:
        lin = [v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4 for v in channels(c)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


# For shadow_eval: the viewport box {x, y, r, b} of the characters [a, b) (UTF-16) of token i.
CHARS_BOX = """(root, [i, a, b]) => {
    const node = root.querySelector(`.plh-text span[data-i='${i}']`).firstChild;
    const r = document.createRange();
    r.setStart(node, a); r.setEnd(node, b);
    const q = r.getBoundingClientRect();
    return {x: q.left, y: q.top, r: q.right, b: q.bottom};
}"""
