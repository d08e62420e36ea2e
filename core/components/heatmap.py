"""Token heatmap: an LLM answer with every token coloured by its probe score.

One Streamlit components-v2 component (no iframe). The browser code is in
`heatmap.js` / `heatmap.css` beside this file; they are read here and passed inline.
Model text is untrusted: the JS sets token text with `textContent` only.

Python API
----------
- `TokenView` -- parallel per-token lists (texts, code-point starts/ends, ids, scores,
  logprobs, entropies); build with `TokenView.from_trace(trace)` or `TokenView.from_lists`.
- `heatmap_payload(tokens, ...)` -- the exact dict sent to the browser (pure, testable).
- `token_heatmap(tokens, ...)` -- mount the component; returns its `ComponentResult`.
- `score_color(score)` / `text_color(score)` / `legend()` -- the colour scale, mirrored
  exactly by the JS (same stops, same interpolation, same rounding).

Units: gold and predicted spans are `{start, end, label}` in Unicode code points of the
NFC answer, like everywhere else in ProbeLens. In view mode they are turned into per-token
labels here (a token takes the label of a span it overlaps), so the browser never sees a
character offset. Edit mode sends per-token code-point offsets and spans in code points;
the JS converts a DOM selection (UTF-16 units) to code points before anything else sees
it, and everything it reports back is code points of the NFC answer.

Colour scale (`SCALE_STOPS`): piecewise-linear in sRGB between
0 -> #ffffff (white), 0.25 -> #ffeda0 (pale yellow), 0.5 -> #feb24c (orange),
0.75 -> #f03b28 (red-orange), 1 -> #a50026 (deep red); every channel is non-increasing
so lightness falls monotonically with the score. Scores are clamped to [0, 1]; an unknown
score (None, NaN) is light grey #e0e0e0. Text turns white from score 0.8 up.

Outcome styling (only when gold spans are given): the prediction is "token overlaps a
predicted span" when `predicted_spans` is given, else "score >= threshold". Against the
gold value (Not Supported / Insufficient Information = 1, Supported or outside every
span = 0, N/A = ignored): TP = solid dark outline, FP = dashed blue outline,
FN = dotted red outline; TN has no outline. Gold spans are underlined in their label's
colour (`GOLD_COLORS`). Without gold, predicted spans get a thin dark outline.

Edit mode (the span editor; verified by tests/e2e/test_span_editor_browser.py)
---------------------------------------------------------------------------------
`token_heatmap(tokens, mode="edit", spans=[...], suggestions=[...], base_version=n,
draft_key="...", conflict=None, on_save=None, on_draft=None, key="...")`. The browser
holds the edit state; no Streamlit rerun happens per click or key. It reports only:

- `save` (a trigger: present in the run right after a save, else None):
  `{"spans": [{start, end, label, note}], "base_version": n, "next": bool,
  "draft_key": str, "doc_id": str}`. Enter = save and next (`next: true`); the Save
  button and Ctrl+S = save (`next: false`). `on_save(payload)` runs as a Streamlit callback
  BEFORE the script body of that rerun, so a page can store the spans and render the new
  version in the same run (no second rerun). `saved_spans(payload, tokens)` validates it.
- `draft` (a state value: persists across reruns until the next draft):
  `{"spans": [...], "base_version": n, "draft_key": str, "doc_id": str, "saved_at": ms}`,
  sent 1 s after the last edit (one rerun per burst of edits). Drafts are also kept in
  the browser's localStorage under `draft_key` on every edit and restored on mount when
  their base_version matches ("draft restored" note, with Discard); a draft for another
  version is offered (Restore / Discard), never applied silently. A stored draft equal to
  the spans given is deleted.

When new data arrives for the same draft_key and tokens (e.g. after a save, with
base_version + 1) the local edits are kept if they are what was saved (or nothing
changed locally); spans the page changes otherwise become one undoable step, so Ctrl+Z
brings the local edits back. While `conflict` is given the local spans are never replaced:
the banner offers Show theirs (their spans as a bar under the text), Take theirs (an
undoable step) and Keep mine; both of the latter set the base version sent with the next
save to `their_version`, so that save goes on top of theirs knowingly. The page decides.

Keys (only while the component has keyboard focus; every key also has a button):
1 / 2 / 3 / 0 label the selection (or relabel the focused span) Not Supported /
Insufficient Information / Supported / N/A; Backspace / Delete delete the focused span;
Ctrl+Z undo, Ctrl+Shift+Z / Ctrl+Y redo; J / K next / previous span; N note on the focused
span; Tab / Shift+Tab next / previous suggestion, A accept it (Not Supported), R reject it;
Enter save and next; Esc clears the selection. Drag or shift+click selects whole tokens
(trimmed of whitespace, as `core.editing.selection_to_span`); with Alt held (or the
"exact" toggle) a drag selects characters (`dom_selection_to_span` mirrors the JS). A new
span overlapping others follows `core.editing.add_span`. Suggestions that overlap a span
are not shown (and so not bulk-accepted); rejected ones stay hidden until restored.
A click on a span focuses it (a second click selects the token under it); a digit on a
focused suggestion accepts it with that label, Delete rejects it; after A / R the focus
moves to the next suggestion. Tab is taken only while suggestions are shown.

Do not mount the editor inside `st.form`: Streamlit drops trigger values there.

Page recipe::

    def store(payload):                       # runs before the script body
        spans = saved_spans(payload, view)    # validated Span list (code points)
        ...save with expected_version=payload["base_version"]; on a version conflict
        keep {"theirs", "their_version", "saved_by"} and pass it back as `conflict`

    result = token_heatmap(view, mode="edit", key=f"editor-{gen_id}", spans=my_spans,
                           suggestions=sugs, base_version=version,
                           draft_key=f"draft-{user_id}-{gen_id}", conflict=conflict,
                           on_save=store)

Work per key press is proportional to the tokens whose drawing changes (per-token label,
suggestion and focus state kept in typed arrays; only changed nodes get a new class):
~8 ms from the key event to the painted frame with 2,000 tokens (benchmarks/annotate_ui.py).
The root element carries the editor state for tests: `data-spans` (JSON, code points),
`data-focus` ("span:i" / "sug:k"), `data-selection` ("start-end"), `data-base-version`,
`data-dirty`; `window.__probelensEdit` logs key event -> painted times.

Streaming pattern (verified in a real browser by tests/e2e/test_heatmap_browser.py)
-------------------------------------------------------------------------------------
Run generation in a background thread that appends to a plain Python object kept in
`st.session_state` (the thread never touches Streamlit), and show it from a fragment
that polls::

    job = st.session_state["gen"]            # object filled by the worker thread
    polling = job.running                     # decided on a full run (see below)

    @st.fragment(run_every=0.1 if polling else None)
    def live():
        with job.lock:                        # snapshot; never hand over the live lists
            view = TokenView.from_lists(list(job.texts), ids=list(job.ids),
                                        scores=list(job.scores), ...)
            running = job.running
        token_heatmap(view, key="gen-heatmap", doc_id=job.id)
        if polling and not running:
            st.rerun(scope="app")             # re-decorate the fragment without run_every

    live()

- Use the SAME `key` on every run. With a key, the element id is the key alone (data is
  not part of the identity), so each fragment run updates the mounted instance: the JS
  default export is called again with the same `parentElement` and new `data`, and
  heatmap.js appends only the new tokens (it checks doc_id and that the previous
  ids/texts are a prefix of the new ones; otherwise it re-renders). Measured: one mount,
  one full render, then only appends for a whole stream.
- Without a key the id is a hash of the data, so every update is a NEW element: the
  component is unmounted and mounted again (fresh shadow root, full re-render, scroll
  position and hover lost; measured 60 mounts for 60 updates). Always pass a key.
- Mount a given key once per script run: the same key both in the page body and inside
  the fragment raises `StreamlitDuplicateElementKey`; two unkeyed heatmaps with equal
  data raise a duplicate auto-generated ID error. One key per document on a page.
- `run_every` is fixed when the fragment function is decorated: decide it on a full run
  from the job state, and have the fragment call `st.rerun(scope="app")` once the job
  has ended -- but only if it was polling, or the full run's fragment (no longer
  polling, job still ended) would rerun forever.
- Set `runner.postScriptGC = false` (`.streamlit/config.toml` `[runner]`, or
  `--runner.postScriptGC false`). Streamlit runs `gc.collect(2)` after EVERY run,
  fragment runs included, holding the GIL: ~60 ms in a bare app, ~180 ms once torch and
  transformers are imported. That stalls the server's event loop, so a run's messages go
  out late and in pieces, and Streamlit drops a run's unsent deltas when the next run
  starts: measured 12-27 visible updates in 6 s instead of ~60, median per-token delay
  ~600 ms instead of ~100 ms.
- Because intermediate updates can be dropped (above) each update carries the whole
  answer (compact arrays, ~30 bytes/token), never a delta; the JS diffs it.
- The JS cleanup returned by the default export runs only at unmount (Streamlit keeps
  only the last one), so heatmap.js attaches listeners once per instance. One race:
  when data changes while the JS module is still loading (cold page load during a
  stream) Streamlit calls the superseded update AND immediately its cleanup, sometimes
  after the newer update (seen: 5 tokens rendered, then 4). heatmap.js therefore renders
  one task later and a cleanup that arrives first cancels that render.
- Every update also re-sends the component's JS+CSS (~90 KB with the span editor; inline
  code is part of the element proto). Harmless locally at 20 Hz (measured: stream delay
  unchanged); worth knowing over slow links.
- Visible delay is dominated by the poll interval (a token waits on average half of it
  for the next fragment run) plus ~30-40 ms of Streamlit round trip and the next frame;
  rendering an append takes a few ms.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from core.editing import normalize_spans, selection_to_span, utf16_selection_to_span
from core.errors import UserError
from core.tokens import canonical_label
from core.types import LABEL_VALUES, Span, TokenTrace

if TYPE_CHECKING:  # streamlit is imported lazily, only when the component is mounted
    from streamlit.components.v2.bidi_component import ComponentResult

COMPONENT_NAME = "probelens.token_heatmap"
PAYLOAD_VERSION = 1
MODES = ("view", "edit")

# (position, (r, g, b)); every channel non-increasing => lightness monotonic in score.
SCALE_STOPS: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.0, (255, 255, 255)),
    (0.25, (255, 237, 160)),
    (0.5, (254, 178, 76)),
    (0.75, (240, 59, 40)),
    (1.0, (165, 0, 38)),
)
UNKNOWN_COLOR = "#e0e0e0"
DARK_TEXT = "#000000"
LIGHT_TEXT = "#ffffff"
LIGHT_TEXT_FROM = 0.8  # score at and above which text is white

# Gold underline colour per label (the UI words in brackets).
GOLD_COLORS: dict[str, str] = {
    "Not Supported": "#c2185b",  # hallucinated
    "Insufficient Information": "#7b1fa2",  # unverifiable
    "Supported": "#2e7d32",  # supported
    "N/A": "#8a8a8a",  # ignore
}
# Which label a token shows when it overlaps several spans (most severe first).
_LABEL_PRIORITY = ("Not Supported", "Insufficient Information", "Supported", "N/A")

_HERE = Path(__file__).resolve().parent


# --- data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenView:
    """What the heatmap shows: parallel per-token lists (positions in code points)."""

    texts: list[str]
    starts: list[int]
    ends: list[int]
    ids: list[int]
    scores: list[float | None]
    logprobs: list[float | None]
    entropies: list[float | None]

    def __post_init__(self) -> None:
        n = len(self.texts)
        for name in ("starts", "ends", "ids", "scores", "logprobs", "entropies"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"TokenView.{name} has {len(getattr(self, name))} items, texts has {n}")

    def __len__(self) -> int:
        return len(self.texts)

    @classmethod
    def from_trace(cls, trace: TokenTrace, scores: Sequence[float | None] | None = None) -> TokenView:
        """From a `TokenTrace`; `scores` overrides `trace.scores` (None = not scored yet)."""
        n = len(trace.token_ids)
        chosen = scores if scores is not None else trace.scores
        return cls(
            texts=list(trace.texts),
            starts=[int(s) for s, _ in trace.offsets],
            ends=[int(e) for _, e in trace.offsets],
            ids=[int(i) for i in trace.token_ids],
            scores=list(chosen) if chosen is not None else [None] * n,
            logprobs=list(trace.logprobs),
            entropies=list(trace.entropies),
        )

    @classmethod
    def from_lists(
        cls,
        texts: Sequence[str],
        *,
        starts: Sequence[int] | None = None,
        ends: Sequence[int] | None = None,
        ids: Sequence[int] | None = None,
        scores: Sequence[float | None] | None = None,
        logprobs: Sequence[float | None] | None = None,
        entropies: Sequence[float | None] | None = None,
    ) -> TokenView:
        """From plain lists; missing offsets are the running code-point lengths of `texts`
        (so "" tokens -- pieces of a split multi-byte character -- are zero-width)."""
        n = len(texts)
        if starts is None or ends is None:
            pos, s_list, e_list = 0, [], []
            for t in texts:
                s_list.append(pos)
                pos += len(t)
                e_list.append(pos)
            starts = s_list if starts is None else starts
            ends = e_list if ends is None else ends
        nothing: list[None] = [None] * n
        return cls(
            texts=[str(t) for t in texts],
            starts=[int(s) for s in starts],
            ends=[int(e) for e in ends],
            ids=[int(i) for i in ids] if ids is not None else list(range(n)),
            scores=list(scores) if scores is not None else list(nothing),
            logprobs=list(logprobs) if logprobs is not None else list(nothing),
            entropies=list(entropies) if entropies is not None else list(nothing),
        )


# --- colour scale ----------------------------------------------------------------------


def _finite(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))  # JS: Math.floor(x + 0.5) -- not Python's banker's round


def score_rgb(score: float | None) -> tuple[int, int, int] | None:
    """The scale's (r, g, b) for a score (clamped to [0, 1]); None for an unknown score."""
    s = _finite(score)
    if s is None:
        return None
    s = min(1.0, max(0.0, s))
    for (p0, c0), (p1, c1) in zip(SCALE_STOPS, SCALE_STOPS[1:]):
        if s <= p1:
            t = (s - p0) / (p1 - p0)
            return tuple(_round_half_up(a + (b - a) * t) for a, b in zip(c0, c1))  # type: ignore[return-value]
    return SCALE_STOPS[-1][1]


def score_color(score: float | None) -> str:
    """Background colour of a token with this probe score, as '#rrggbb' (mirrors the JS)."""
    rgb = score_rgb(score)
    if rgb is None:
        return UNKNOWN_COLOR
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def text_color(score: float | None) -> str:
    """Text colour that stays readable on `score_color(score)`."""
    s = _finite(score)
    return LIGHT_TEXT if s is not None and s >= LIGHT_TEXT_FROM else DARK_TEXT


def legend(threshold: float = 0.5) -> dict[str, Any]:
    """What the legend shows (the JS draws the same from the same constants)."""
    return {
        "scale": [{"at": p, "color": "#{:02x}{:02x}{:02x}".format(*c)} for p, c in SCALE_STOPS],
        "unknown": UNKNOWN_COLOR,
        "threshold": float(threshold),
        "gold": dict(GOLD_COLORS),
        "outcomes": {
            "TP": "solid dark outline: flagged and gold hallucinated",
            "FP": "dashed blue outline: flagged but gold supported / outside gold spans",
            "FN": "dotted red outline: not flagged but gold hallucinated",
        },
    }


# --- spans -> per-token labels ----------------------------------------------------------


def _span_fields(span: Span | Mapping[str, Any], where: str) -> tuple[int, int, str]:
    if isinstance(span, Span):
        start, end, label = span.start, span.end, span.label
    elif isinstance(span, Mapping):
        start, end, label = span.get("start"), span.get("end"), span.get("label", "N/A")
    else:
        raise UserError(f"{where} must be a {{start, end, label}} object")
    for name, v in (("start", start), ("end", end)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise UserError(f"{where}: {name} must be an integer (code points)")
    if not 0 <= start <= end:
        raise UserError(f"{where}: needs 0 <= start <= end, got [{start}, {end})")
    return start, end, canonical_label("N/A" if label is None else label)


def token_gold_labels(
    starts: Sequence[int], ends: Sequence[int], spans: Iterable[Span | Mapping[str, Any]]
) -> list[str | None]:
    """Per token, the label of a span it overlaps (code points), else None.

    Overlap is `start < span.end and span.start < end` for tokens of non-zero width (the
    rule of `core.tokens.token_labels`); zero-width tokens never get a label. A token
    overlapping several spans shows the most severe label (Not Supported first).
    """
    parsed = [_span_fields(sp, f"span {k + 1}") for k, sp in enumerate(spans)]
    n = len(starts)
    if not parsed or n == 0:
        return [None] * n
    s = np.asarray(starts, dtype=np.int64)
    e = np.asarray(ends, dtype=np.int64)
    wide = s < e
    rank = np.full(n, len(_LABEL_PRIORITY), dtype=np.int8)  # lower = more severe
    for a, b, label in parsed:
        r = _LABEL_PRIORITY.index(label)
        hit = wide & (s < b) & (a < e)
        rank[hit & (rank > r)] = r
    return [_LABEL_PRIORITY[r] if r < len(_LABEL_PRIORITY) else None for r in rank.tolist()]


def token_predictions(
    starts: Sequence[int], ends: Sequence[int], spans: Iterable[Span | Mapping[str, Any]]
) -> list[int]:
    """Per token 1 if it overlaps a predicted span whose label is not 'Supported'/'N/A'."""
    labels = token_gold_labels(starts, ends, spans)
    return [1 if lab is not None and LABEL_VALUES[lab] == 1 else 0 for lab in labels]


# --- payload -------------------------------------------------------------------------------


def _rounded(values: Sequence[Any], digits: int) -> list[float | None]:
    out: list[float | None] = []
    for v in values:
        f = _finite(v)
        out.append(None if f is None else round(f, digits))
    return out


def heatmap_payload(
    tokens: TokenView,
    *,
    threshold: float = 0.5,
    gold_spans: Sequence[Span | Mapping[str, Any]] | None = None,
    predicted_spans: Sequence[Span | Mapping[str, Any]] | None = None,
    mode: str = "view",
    focus: int | None = None,
    height: int | None = None,
    doc_id: str | None = None,
    produced_at: float | Sequence[float] | None = None,
    spans: Sequence[Span | Mapping[str, Any]] | None = None,
    suggestions: Sequence[Any] | None = None,
    base_version: int = 0,
    draft_key: str | None = None,
    conflict: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Exactly the JSON-able dict the browser receives: compact parallel arrays.

    Scores are rounded to 4 decimals, log-probabilities and entropies to 3; non-finite
    values become null (JSON has no NaN/inf). `gold` is a per-token label or null and is
    itself null when no gold spans were given (then no TP/FP/FN styling); `pred` is a
    per-token 0/1 from `predicted_spans`, or null (then the threshold decides).
    `produced_at` (epoch ms of the newest token, or one per token) is only for latency
    measurement and is recorded by the browser on paint.

    Edit mode (`mode="edit"`) adds `edit`: per-token code-point `starts`/`ends`, the
    annotator's `spans` (validated, labels canonical, made consistent by
    `core.editing.normalize_spans`), probe `suggestions` ({start, end, score}, sorted),
    `base_version`, `draft_key` and `conflict` (see `edit_payload`). The edit-only
    arguments are rejected in view mode.
    """
    if mode not in MODES:
        raise UserError(f"unknown heatmap mode {mode!r} (expected one of: {', '.join(MODES)})")
    thr = _finite(threshold)
    if thr is None or not 0.0 <= thr <= 1.0:
        raise UserError(f"threshold must be a number in [0, 1], got {threshold!r}")
    n = len(tokens)
    # A focus past the end is kept: while streaming, the browser applies it once that
    # token has arrived.
    if focus is not None and (isinstance(focus, bool) or not isinstance(focus, int) or focus < 0):
        raise UserError(f"focus must be a token index >= 0, got {focus!r}")
    if height is not None and (isinstance(height, bool) or not isinstance(height, int) or height < 40):
        raise UserError(f"height must be an integer number of pixels >= 40, got {height!r}")
    gold = None if gold_spans is None else token_gold_labels(tokens.starts, tokens.ends, gold_spans)
    pred = None if predicted_spans is None else token_predictions(tokens.starts, tokens.ends, predicted_spans)
    if produced_at is None or isinstance(produced_at, (int, float)):
        produced = produced_at
    else:
        produced = [float(x) for x in produced_at]
        if len(produced) != n:
            raise ValueError(f"produced_at has {len(produced)} items for {n} tokens")
    if mode == "view":
        given = [name for name, v in (("spans", spans), ("suggestions", suggestions), ("draft_key", draft_key),
                                      ("conflict", conflict)) if v is not None]
        if given or base_version != 0:
            raise UserError(f"{', '.join(given) or 'base_version'} only apply in edit mode (mode='edit')")
        edit = None
    else:
        edit = edit_payload(tokens, spans=spans or [], suggestions=suggestions or [], base_version=base_version,
                            draft_key=draft_key if draft_key is not None else ("" if doc_id is None else str(doc_id)),
                            conflict=conflict)
    return {
        "v": PAYLOAD_VERSION,
        "doc_id": "" if doc_id is None else str(doc_id),
        "mode": mode,
        "threshold": thr,
        "n": n,
        "texts": list(tokens.texts),
        "ids": [int(i) for i in tokens.ids],
        "scores": _rounded(tokens.scores, 4),
        "logprobs": _rounded(tokens.logprobs, 3),
        "entropies": _rounded(tokens.entropies, 3),
        "gold": gold,
        "pred": pred,
        "focus": focus,
        "height": height,
        "produced_at": produced,
        "edit": edit,
    }


def token_outcomes(payload: Mapping[str, Any]) -> list[str | None]:
    """Per token 'TP' / 'FP' / 'FN' / None, exactly as the JS styles them (for tests)."""
    gold, pred, scores, texts = payload["gold"], payload["pred"], payload["scores"], payload["texts"]
    if gold is None:
        return [None] * len(texts)
    out: list[str | None] = []
    for i, text in enumerate(texts):
        g = 0 if gold[i] is None else LABEL_VALUES[gold[i]]
        if pred is not None:
            p: int | None = pred[i]
        else:
            p = None if scores[i] is None else int(scores[i] >= payload["threshold"])
        if text == "" or g is None or p is None:
            out.append(None)
        elif p and g:
            out.append("TP")
        elif p:
            out.append("FP")
        elif g:
            out.append("FN")
        else:
            out.append(None)
    return out


# --- edit mode ------------------------------------------------------------------------------


def answer_text(tokens: TokenView) -> str:
    """The answer the editor works on: the token texts joined (they cover it exactly)."""
    return "".join(tokens.texts)


def _int_field(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{what} must be an integer")
    return value


def _edit_span(span: Span | Mapping[str, Any], where: str, length: int) -> Span:
    start, end, label = _span_fields(span, where)
    note = span.note if isinstance(span, Span) else span.get("note")
    if note is not None and not isinstance(note, str):
        raise UserError(f"{where}: note must be text")
    if start == end:
        raise UserError(f"{where} is empty ([{start}, {end}))")
    if end > length:
        raise UserError(f"{where} ends at {end}, past the end of the answer ({length} code points)")
    return Span(start, end, label, (note or "").strip() or None)


def _span_dict(span: Span) -> dict[str, Any]:
    return {"start": span.start, "end": span.end, "label": span.label, "note": span.note}


def _edit_spans(spans: Sequence[Span | Mapping[str, Any]], what: str, text: str) -> list[dict[str, Any]]:
    if isinstance(spans, (str, bytes, Mapping)) or not isinstance(spans, Sequence):
        raise UserError(f"{what} must be a list of {{start, end, label}} objects")
    parsed = [_edit_span(sp, f"{what} {k + 1}", len(text)) for k, sp in enumerate(spans)]
    return [_span_dict(sp) for sp in normalize_spans(parsed, text)]


def _suggestion_fields(sug: Any, where: str, length: int) -> dict[str, Any]:
    if isinstance(sug, Mapping):
        start, end, score = sug.get("start"), sug.get("end"), sug.get("score")
    elif all(hasattr(sug, name) for name in ("start", "end", "score")):  # core.editing.Suggestion
        start, end, score = sug.start, sug.end, sug.score
    else:
        raise UserError(f"{where} must be a {{start, end, score}} object")
    for name, v in (("start", start), ("end", end)):
        _int_field(v, f"{where}: {name}")
    if not 0 <= start < end <= length:
        raise UserError(f"{where}: needs 0 <= start < end <= {length}, got [{start}, {end})")
    sc = _finite(score)
    if sc is None:
        raise UserError(f"{where}: score must be a number")
    return {"start": start, "end": end, "score": round(sc, 4)}


def edit_payload(
    tokens: TokenView,
    *,
    spans: Sequence[Span | Mapping[str, Any]] = (),
    suggestions: Sequence[Any] = (),
    base_version: int = 0,
    draft_key: str = "",
    conflict: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The `edit` part of the payload (all positions code points of the NFC answer).

    `starts`/`ends` are the tokens' offsets (a token-snapped selection becomes
    [min start, max end) of its tokens of non-zero width, then trimmed of whitespace);
    `spans` are validated and normalised; `suggestions` are sorted by position;
    `conflict` is `{"theirs": [spans], "their_version": int, "saved_by": str}` or None
    (other keys are ignored).
    """
    text = answer_text(tokens)
    _int_field(base_version, "base_version")
    if not isinstance(draft_key, str):
        raise UserError("draft_key must be text")
    if isinstance(suggestions, (str, bytes, Mapping)) or not isinstance(suggestions, Sequence):
        raise UserError("suggestions must be a list of {start, end, score} objects")
    sugs = [_suggestion_fields(sg, f"suggestion {k + 1}", len(text)) for k, sg in enumerate(suggestions)]
    sugs.sort(key=lambda d: (d["start"], d["end"], -d["score"]))
    conf = None
    if conflict is not None:
        if not isinstance(conflict, Mapping):
            raise UserError("conflict must be a {theirs, their_version, saved_by} object")
        saved_by = conflict.get("saved_by")
        conf = {
            "theirs": _edit_spans(conflict.get("theirs") or [], "their span", text),
            "their_version": _int_field(conflict.get("their_version"), "conflict.their_version"),
            "saved_by": "" if saved_by is None else str(saved_by),
        }
    return {
        "starts": [int(x) for x in tokens.starts],
        "ends": [int(x) for x in tokens.ends],
        "spans": _edit_spans(spans, "span", text),
        "suggestions": sugs,
        "base_version": base_version,
        "draft_key": draft_key,
        "conflict": conf,
    }


def edit_token_labels(payload: Mapping[str, Any], spans: Sequence[Mapping[str, Any]] | None = None) -> list[str | None]:
    """Per token, the label the editor draws for `spans` (default: the payload's spans).

    The rule of `token_gold_labels` (and of the training labels): a token of non-zero
    width overlapping a span shows its label, the most severe when several.
    """
    edit = payload["edit"]
    return token_gold_labels(edit["starts"], edit["ends"], edit["spans"] if spans is None else spans)


def visible_suggestions(payload: Mapping[str, Any], spans: Sequence[Mapping[str, Any]] | None = None) -> list[dict]:
    """The suggestions the editor shows: those overlapping no span (rejections aside)."""
    edit = payload["edit"]
    current = edit["spans"] if spans is None else spans
    return [sg for sg in edit["suggestions"]
            if not any(sg["start"] < sp["end"] and sp["start"] < sg["end"] for sp in current)]


def token_selection_to_span(tokens: TokenView, first: int, last: int) -> tuple[int, int]:
    """What the JS makes of a token-snapped selection (drag or shift+click) from token
    `first` to token `last` (inclusive, either order): `core.editing.selection_to_span`."""
    offsets = list(zip(tokens.starts, tokens.ends))
    return selection_to_span(offsets, first, last, text=answer_text(tokens))


def dom_selection_to_span(texts: Sequence[str], start_token: int, start_u16: int,
                          end_token: int, end_u16: int) -> tuple[int, int]:
    """What the JS makes of an Alt (character-precision) selection.

    A DOM Selection reports positions as (text node of token i, offset in UTF-16 units).
    Positions are made global in UTF-16 units and converted with
    `core.editing.utf16_selection_to_span` (astral characters count 1; a boundary inside a
    surrogate pair widens the span to the whole character). Either order.
    """
    n = len(texts)
    before = [0]
    for t in texts:
        before.append(before[-1] + len(t.encode("utf-16-le", "surrogatepass")) // 2)
    globals_ = []
    for tok, off in ((start_token, start_u16), (end_token, end_u16)):
        if not 0 <= tok < n:
            raise UserError(f"token {tok} is outside the {n} tokens")
        if not 0 <= off <= before[tok + 1] - before[tok]:
            raise UserError(f"offset {off} is outside token {tok}")
        globals_.append(before[tok] + off)
    return utf16_selection_to_span("".join(texts), *globals_)


def saved_spans(value: Any, tokens: TokenView) -> list[Span]:
    """The spans of a `save` (or `draft`) value from the editor, validated: a list of
    `Span` in code points of the answer, normalised. Bad input is one `UserError`."""
    if not isinstance(value, Mapping) or not isinstance(value.get("spans"), list):
        raise UserError("the editor sent no span list")
    text = answer_text(tokens)
    parsed = []
    for k, sp in enumerate(value["spans"]):
        if not isinstance(sp, Mapping):  # a browser sends plain objects, never Span
            raise UserError(f"saved span {k + 1} must be a {{start, end, label}} object")
        parsed.append(_edit_span(sp, f"saved span {k + 1}", len(text)))
    return normalize_spans(parsed, text)


# --- the component ---------------------------------------------------------------------------


def _asset(name: str) -> str:
    return (_HERE / name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _component():
    """Register once per process (the registration is re-applied per runtime by Streamlit)."""
    import streamlit as st

    return st.components.v2.component(
        COMPONENT_NAME,
        html='<div class="plh-root" data-testid="probelens-heatmap"></div>',
        css=_asset("heatmap.css"),
        js=_asset("heatmap.js"),
    )


def token_heatmap(
    tokens: TokenView,
    *,
    threshold: float = 0.5,
    gold_spans: list[dict] | None = None,
    predicted_spans: list[dict] | None = None,
    mode: str = "view",
    focus: int | None = None,
    key: str | None = None,
    height: int | None = None,
    doc_id: str | None = None,
    produced_at: float | Sequence[float] | None = None,
    spans: Sequence[Span | Mapping[str, Any]] | None = None,
    suggestions: Sequence[Any] | None = None,
    base_version: int = 0,
    draft_key: str | None = None,
    conflict: Mapping[str, Any] | None = None,
    on_save: Callable[[dict], None] | None = None,
    on_draft: Callable[[dict], None] | None = None,
) -> ComponentResult:
    """Render `tokens` as a heatmap. Pass a stable `key` (required for streaming updates).

    `height` caps the text area in pixels (it scrolls; while streaming it sticks to the
    bottom when the reader is at the bottom). `focus` scrolls a token into view and
    flashes it whenever its value changes (a focus past the end waits for that token).
    `doc_id` names the document: a new doc_id always re-renders instead of appending.

    `mode="edit"` is the span editor (see the module docstring): `spans` (code points,
    `{start, end, label, note}` or `Span`), `suggestions` (`{start, end, score}` or
    `core.editing.Suggestion`), `base_version`, `draft_key` (localStorage key of the
    draft; default the doc_id, else the key), `conflict`. A `key` is required. The result
    has `save` (the payload of a save, only in the run it triggered, else None) and
    `draft` (the last draft sent, persistent); `on_save(payload)` / `on_draft(payload)`
    are called as Streamlit callbacks, before the script body of that rerun.
    """
    if mode == "edit" and key is None:
        raise UserError("the span editor (mode='edit') needs a key")
    payload = heatmap_payload(
        tokens,
        threshold=threshold,
        gold_spans=gold_spans,
        predicted_spans=predicted_spans,
        mode=mode,
        focus=focus,
        height=height,
        doc_id=doc_id if doc_id is not None else key,
        produced_at=produced_at,
        spans=spans if mode == "edit" else None,
        suggestions=suggestions if mode == "edit" else None,
        base_version=base_version,
        draft_key=(draft_key if draft_key is not None else (doc_id if doc_id is not None else key))
        if mode == "edit" else draft_key,
        conflict=conflict,
    )
    if mode != "edit":
        return _component()(key=key, data=payload, width="stretch", height="content")
    return _component()(
        key=key, data=payload, width="stretch", height="content",
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
