"""Running ONE of the component's JS files on its own, for the parity tests (JS rules and
colours against their Python twins): in node when there is one, else in Debian's Chromium.

`js_runner()` yields `run(name, fn, arg)`: `fn` is the source of a JS function
`(P, arg) => result`, P the namespace that file defines (`colour.js` -> `Colour`); `arg` and
the result travel as JSON. A file that takes the payload's style (labels, colours) is first
configured with Python's (`style_payload`), as the component does with every payload.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from core.components import heatmap as hm
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

NODE = shutil.which("node")
# What the component does with each payload's `style` (index.js), for a file loaded alone.
CONFIGURE = f"if (P.configure) P.configure({json.dumps(hm.style_payload())});"
Runner = Callable[[str, str, Any], Any]


def node_json(script: str, arg: Any = None) -> Any:
    """Run `script` in node with `arg` as JSON on stdin; its stdout parsed as JSON."""
    out = subprocess.run([NODE, "-e", script], input=json.dumps(arg), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def namespace(name: str) -> str:
    """The one top-level name a js/ file defines (`spans.js` -> `Spans`)."""
    return name[:-3].capitalize()


@contextmanager
def js_runner() -> Iterator[Runner]:
    """`run(name, fn, arg)` for the js/ file `name` loaded alone (skips when neither node nor
    Chromium is installed)."""
    if NODE:

        def run(name: str, fn: str, arg: Any) -> Any:
            script = (
                f"const P = require({json.dumps(str(hm.JS_DIR / name))});\n{CONFIGURE}\nconst f = {fn};\n"
                "let s = ''; process.stdin.on('data', (c) => (s += c)).on('end', () => "
                "process.stdout.write(JSON.stringify(f(P, JSON.parse(s)))));"
            )
            return node_json(script, arg)

        yield run
        return
    if not Path(CHROMIUM).exists():
        pytest.skip(f"neither node nor {CHROMIUM} is installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()

        def run(name: str, fn: str, arg: Any) -> Any:
            page.set_content("<html><body></body></html>")
            page.add_script_tag(content=(hm.JS_DIR / name).read_text(encoding="utf-8"))  # a classic script
            return page.evaluate(f"arg => {{ const P = {namespace(name)}; {CONFIGURE} return ({fn})(P, arg); }}", arg)

        try:
            yield run
        finally:
            browser.close()
