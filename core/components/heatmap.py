"""Token heatmap: an LLM answer with every token coloured by its probe score, and (mode="edit")
the span editor. One Streamlit components-v2 component (no iframe).

- `heatmap_data.py` (re-exported here): `TokenView`, the labels and colour scale (sent in
  every payload as `style`), `heatmap_payload` (the exact dict the browser gets) and the
  helpers that validate what comes back.
- this module: `token_heatmap(...)` mounts the component; `component_js()` assembles the
  browser code from `js/` (order and pattern below); `component_css()` the styles:
  `heatmap.css` plus the rules that name a label (`heatmap_data.label_css`).
- `STREAMLIT_NOTES.md`: how to stream into it, what the editor sends back, runtime pitfalls.

Model text is untrusted: the JS sets token text with `textContent` only.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.base.errors import UserError
from core.components.heatmap_data import (
    GOLD_COLOURS,
    LABEL_KEYS,
    LABEL_LINE_STYLES,
    LIGHT_TEXT_FROM,
    LINE_COLOURS,
    LINE_TONE_FROM,
    MODES,
    OUTCOMES,
    PAYLOAD_VERSION,
    SCALE_STOPS,
    SUGGESTION_LINE,
    UNKNOWN_COLOR,
    TokenView,
    answer_text,
    edit_payload,
    heatmap_payload,
    label_css,
    saved_spans,
    style_payload,
    token_gold_labels,
    token_predictions,
)

if TYPE_CHECKING:  # streamlit is imported lazily, only when the component is mounted
    from streamlit.components.v2.bidi_component import ComponentResult

__all__ = [
    "GOLD_COLOURS",
    "LABEL_KEYS",
    "LABEL_LINE_STYLES",
    "LIGHT_TEXT_FROM",
    "LINE_COLOURS",
    "LINE_TONE_FROM",
    "MODES",
    "OUTCOMES",
    "PAYLOAD_VERSION",
    "SCALE_STOPS",
    "SUGGESTION_LINE",
    "UNKNOWN_COLOR",
    "TokenView",
    "answer_text",
    "edit_payload",
    "heatmap_payload",
    "label_css",
    "saved_spans",
    "style_payload",
    "token_gold_labels",
    "token_predictions",
    "COMPONENT_NAME",
    "JS_FILES",
    "component_css",
    "component_js",
    "token_heatmap",
]

COMPONENT_NAME = "probelens.token_heatmap"

_HERE = Path(__file__).resolve().parent
JS_DIR = _HERE / "js"

# The browser code, one job per file. Components v2 takes the JS inline as one ES module
# (asset paths work only for installed packages), so the files are concatenated in this
# order. Each file but the last defines ONE top-level name, a namespace object built by an
# IIFE (`const Spans = (() => { ... return {...}; })();`), and uses only the namespaces of
# files above it; index.js is last and holds `export default`. colour.js and spans.js also
# load on their own (a plain script, or node's require) for the parity tests.
JS_FILES = (
    "colour.js",  # Colour:   score colour scale, label colours (from the payload's style)
    "spans.js",  # Spans:    span and selection rules (mirror core/text/editing.py); pure
    "perf.js",  # Perf:     timing instrumentation, off unless window.__probelensPerf
    "payload.js",  # Payload:  JSDoc types of the data in and out; normalise()
    "view.js",  # View:     tokens, chunks, legend, focus, appends (view mode)
    "editor.js",  # Editor:   the editor's state, per-token drawing, focus, selection
    "outline.js",  # Outline:  the focused span / suggestion as one outline (a box per line)
    "tooltip.js",  # Tooltip:  the token tooltip
    "drafts.js",  # Drafts:   localStorage drafts, the debounced draft to the app
    "toolbar.js",  # Toolbar:  buttons, banners, status, built from the actions table
    "commands.js",  # Commands: what each action does to the state (commit, undo, save...)
    "sync.js",  # Sync:     new data from the app, stored drafts, conflicts
    "caret.js",  # Caret:    the keyboard caret (arrows, Home / End) and Shift+arrow selections
    "actions.js",  # Actions:  THE actions table (keys, buttons, legend) and key matching
    "keys.js",  # Keys:     keyboard and button clicks through the table
    "mouse.js",  # Mouse:    token drags, shift+click, Alt character selection
    "index.js",  # the entry: instances, render dispatch, the default export
)


def _strip_comments(code: str) -> str:
    """Drop comment-only lines, JSDoc blocks and blank lines (the JS is re-sent with every
    update of the component, so its comments would be too)."""
    out, in_doc = [], False
    for line in code.splitlines():
        s = line.strip()
        if in_doc:
            in_doc = not s.endswith("*/")
        elif s.startswith("/**"):
            in_doc = not s.endswith("*/")
        elif s and not s.startswith("//"):
            out.append(line)
    return "\n".join(out) + "\n"


@lru_cache(maxsize=2)
def component_js(strip: bool = True) -> str:
    """The component's JS: the files of `JS_FILES` concatenated in order (one ES module)."""
    parts = [(JS_DIR / name).read_text(encoding="utf-8") for name in JS_FILES]
    if strip:
        parts = [_strip_comments(p) for p in parts]
    return "\n".join(parts)


@lru_cache(maxsize=1)
def component_css() -> str:
    """The component's CSS: heatmap.css (no label in it) and the label rules from Python."""
    return (_HERE / "heatmap.css").read_text(encoding="utf-8") + "\n" + label_css()


@lru_cache(maxsize=1)
def _component():
    """Register once per process (the registration is re-applied per runtime by Streamlit)."""
    import streamlit as st

    return st.components.v2.component(
        COMPONENT_NAME,
        html='<div class="plh-root" data-testid="probelens-heatmap"></div>',
        css=component_css(),
        js=component_js(),
    )


def token_heatmap(
    tokens: TokenView,
    *,
    key: str | None = None,
    on_save: Callable[[dict], None] | None = None,
    on_draft: Callable[[dict], None] | None = None,
    **options: Any,
) -> ComponentResult:
    """Render `tokens` as a heatmap. Pass a stable `key` (required for streaming updates).

    `options` are those of `heatmap_data.heatmap_payload` (threshold, gold/predicted spans,
    mode, focus, height, doc_id, produced_at, and in edit mode spans, suggestions,
    base_version, draft_key, conflict): one list, documented there. `doc_id` defaults to the
    key (a new doc_id always re-renders instead of appending), and in edit mode the draft's
    localStorage key defaults to the doc_id.

    `mode="edit"` is the span editor (see STREAMLIT_NOTES.md) and needs a `key`. The result
    has `save` (the payload of a save, only in the run it triggered, else None) and `draft`
    (the last draft sent, persistent); `on_save(payload)` / `on_draft(payload)` are called as
    Streamlit callbacks, before the script body of that rerun.
    """
    mode = options.get("mode", "view")
    if mode == "edit" and key is None:
        raise UserError("the span editor (mode='edit') needs a key")
    if options.get("doc_id") is None:
        options["doc_id"] = key
    if mode == "edit":
        if options.get("draft_key") is None:
            options["draft_key"] = options["doc_id"]
    else:
        options.pop("spans", None)
        options.pop("suggestions", None)
    payload = heatmap_payload(tokens, **options)
    if mode != "edit":
        return _component()(key=key, data=payload, width="stretch", height="content")
    assert key is not None, "edit mode without a key was refused above"
    return _component()(
        key=key,
        data=payload,
        width="stretch",
        height="content",
        on_save_change=_callback(key, "save", on_save),
        on_draft_change=_callback(key, "draft", on_draft),
    )


def _callback(key: str, event: str, user: Callable[[dict], None] | None) -> Callable[[], None]:
    """A Streamlit callback (no arguments) that hands the event's value to `user`.

    Registering a callback is also what makes `event` appear on the result object, so a
    no-op one is registered when the page gives none.
    """

    def run() -> None:
        if user is None:
            return
        import streamlit as st

        value = st.session_state[key].get(event) if key in st.session_state else None
        if value is not None:
            user(value)

    return run
