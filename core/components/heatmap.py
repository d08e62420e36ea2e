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
NFC answer, like everywhere else in ProbeLens. They are turned into per-token labels
here (a token takes the label of a span it overlaps), so the browser never sees a
character offset and no UTF-16 conversion is needed for the view. (Edit mode will
report token indices; `core.tokens.token_ranges_to_char_span` turns them back.)

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
- Every update also re-sends the component's JS+CSS (~20 KB; inline code is part of the
  element proto). Harmless locally at 10 Hz; worth knowing over slow links.
- Visible delay is dominated by the poll interval (a token waits on average half of it
  for the next fragment run) plus ~30-40 ms of Streamlit round trip and the next frame;
  rendering an append takes a few ms.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

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
) -> dict[str, Any]:
    """Exactly the JSON-able dict the browser receives: compact parallel arrays.

    Scores are rounded to 4 decimals, log-probabilities and entropies to 3; non-finite
    values become null (JSON has no NaN/inf). `gold` is a per-token label or null and is
    itself null when no gold spans were given (then no TP/FP/FN styling); `pred` is a
    per-token 0/1 from `predicted_spans`, or null (then the threshold decides).
    `produced_at` (epoch ms of the newest token, or one per token) is only for latency
    measurement and is recorded by the browser on paint.
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
) -> ComponentResult:
    """Render `tokens` as a heatmap. Pass a stable `key` (required for streaming updates).

    `height` caps the text area in pixels (it scrolls; while streaming it sticks to the
    bottom when the reader is at the bottom). `focus` scrolls a token into view and
    flashes it whenever its value changes (a focus past the end waits for that token).
    `doc_id` names the document: a new doc_id always re-renders instead of appending.
    Only `mode="view"` is implemented.
    """
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
    )
    return _component()(key=key, data=payload, width="stretch", height="content")
