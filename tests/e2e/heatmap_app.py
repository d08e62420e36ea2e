"""Test app for the token heatmap: `streamlit run tests/e2e/heatmap_app.py`, then
`?case=basic`, `?case=xss`, `?case=n5000` (any `n<count>`), or `?case=stream`.

The stream case simulates generation: a background thread appends one token every
`interval` ms (default 50, `total` tokens, default 120) to a plain object in
session_state; a fragment polls it every 0.1 s and re-mounts the heatmap with the same
key and the grown data (the pattern in core/components/STREAMLIT_NOTES.md).
`&key=none` mounts without a key (to observe what that does); `&poll=0.05` changes the
fragment's poll interval (seconds).

`?case=edit` is the span editor on a short answer with emoji / CJK (`&n=2000`: a long
one). A small in-memory "database" in session_state plays the page: `on_save` stores the
spans when the base version matches (version + 1), else records a conflict that is passed
back to the editor. The page prints the last save as `SAVED {json}` and the last draft
as `DRAFT {json}` (st.code), and `runs N` counts script runs. "Simulate another save"
makes someone else ("bob") save a version meanwhile.
"""

from __future__ import annotations

import json
import random
import re
import sys
import threading
import time
import uuid
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from heatmap_cases import JUDGE_NOTE, XSS_TOKENS, basic_case, edit_case, edit_sized_case, sized_case, their_spans  # noqa: E402

from core.components.heatmap import TokenView, saved_spans, token_heatmap  # noqa: E402

st.set_page_config(page_title="heatmap test", layout="centered")
params = st.query_params
case = params.get("case", "basic")
st.session_state["runs"] = st.session_state.get("runs", 0) + 1


class FakeGeneration:
    """What a real Generate page keeps in session_state: filled by a worker thread."""

    def __init__(self, total: int, interval_ms: float) -> None:
        self.id = uuid.uuid4().hex[:8]
        self.total, self.interval = total, interval_ms / 1000.0
        self.lock = threading.Lock()
        self.texts: list[str] = []
        self.ids: list[int] = []
        self.scores: list[float | None] = []
        self.produced: list[float] = []
        self.running = True
        self.thread = threading.Thread(target=self._run, name=f"fake-gen-{self.id}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        rng = random.Random(3)
        words = [
            "Marie",
            "Curie",
            "won",
            "the",
            "Nobel",
            "Prize",
            "in",
            "1903",
            "and",
            "1911",
            "for",
            "radium",
            "research",
            "at",
            "Sorbonne",
            "university",
        ]
        level = 0.2
        start = time.perf_counter()
        for i in range(self.total):
            # Sleep to an absolute schedule so the rate does not drift.
            time.sleep(max(0.0, start + (i + 1) * self.interval - time.perf_counter()))
            level = min(1.0, max(0.0, level + rng.uniform(-0.25, 0.25)))
            with self.lock:
                if self.scores and self.scores[-1] is None:
                    self.scores[-1] = round(level, 4)  # a late score: restyle of an old token
                self.texts.append(("\n" if i % 25 == 24 else " ") + rng.choice(words) if i else "Answer:")
                self.ids.append(100 + i)
                self.scores.append(None if i % 7 == 3 else round(level, 4))
                self.produced.append(time.time() * 1000.0)
        with self.lock:
            if self.scores and self.scores[-1] is None:
                self.scores[-1] = 0.5
            self.running = False

    def snapshot(self) -> tuple[TokenView, list[float], bool]:
        with self.lock:
            view = TokenView.from_lists(list(self.texts), ids=list(self.ids), scores=list(self.scores))
            return view, list(self.produced), self.running


st.title("Token heatmap")
m = re.fullmatch(r"n(\d+)", case)
if case == "basic":
    view, gold = basic_case()
    focus = params.get("focus")
    token_heatmap(view, threshold=0.5, gold_spans=gold, key="basic", focus=int(focus) if focus else None)
elif case == "nogold":
    view, _ = basic_case()
    token_heatmap(view, threshold=0.5, key="nogold")
elif case == "xss":
    view = TokenView.from_lists(XSS_TOKENS, scores=[0.1 + 0.05 * i for i in range(len(XSS_TOKENS))])
    token_heatmap(view, key="xss")
elif m:
    n = int(m.group(1))
    # "re-render" changes doc_id: a full re-render in a warm page (for the benchmark).
    rep = st.session_state.get("rep", 0)
    if st.button("re-render", key="rerender"):
        rep = st.session_state["rep"] = rep + 1
    token_heatmap(
        sized_case(n, seed=rep),
        key=f"n{n}",
        doc_id=f"n{n}-{rep}",
        height=int(params.get("height", 0)) or None,
    )
elif case == "stream":
    total = int(params.get("total", 120))
    interval = float(params.get("interval", 50))
    if "gen" not in st.session_state:
        st.session_state["gen"] = FakeGeneration(total, interval)
    job: FakeGeneration = st.session_state["gen"]
    keyed = params.get("key", "stream") != "none"
    polling = job.running  # decided on a full run: run_every is fixed when decorated

    poll = float(params.get("poll", 0.1))

    @st.fragment(run_every=poll if polling else None)
    def live() -> None:
        view, produced, running = job.snapshot()
        token_heatmap(
            view,
            threshold=0.5,
            key="stream" if keyed else None,
            doc_id=job.id,
            produced_at=produced,
            height=300,
        )
        st.caption(f"stream {job.id}: {len(view)} tokens, {'running' if running else 'done'}")
        if polling and not running:
            st.rerun(scope="app")  # a full run re-decorates the fragment without run_every

    live()
elif case == "edit":
    n = int(params.get("n", 0))
    view, suggestions = edit_sized_case(n) if n else edit_case()
    if params.get("judge"):  # the first suggestion comes from an LLM judge, with its label and a hostile note
        suggestions = [
            {**suggestions[0], "score": 1.0, "label": "Supported", "note": JUDGE_NOTE, "source": "gpt"},
            *suggestions[1:],
        ]
    store = st.session_state.setdefault(
        "store",
        {
            "version": 0,
            "spans": [],
            "saved_by": None,  # the "database"
            "opened": 0,
            "opened_spans": [],  # what this editor was opened on
            "saves": 0,
            "last": None,
            "conflict": None,
            "conflicts": 0,
        },
    )

    def on_save(payload: dict) -> None:
        spans = [{"start": s.start, "end": s.end, "label": s.label, "note": s.note} for s in saved_spans(payload, view)]
        if payload["base_version"] == store["version"]:
            store["version"] += 1
            store.update(
                spans=spans,
                saved_by="me",
                opened=store["version"],
                opened_spans=spans,
                conflict=None,
                saves=store["saves"] + 1,
                last=payload,
            )
        else:
            store["conflicts"] += 1
            store["conflict"] = {
                "theirs": store["spans"],
                "their_version": store["version"],
                "saved_by": store["saved_by"] or "someone",
            }

    if st.button("Simulate another save", key="other-save"):
        store["version"] += 1
        store.update(spans=their_spans(view), saved_by="bob")
    draft_key = params.get("draft_key", f"test-edit-{n}")
    result = token_heatmap(
        view,
        mode="edit",
        key="editor",
        spans=store["opened_spans"],
        suggestions=suggestions,
        base_version=store["opened"],
        draft_key=draft_key,
        conflict=store["conflict"],
        on_save=on_save,
        height=int(params.get("height", 0)) or None,
    )
    st.code(
        "SAVED "
        + json.dumps(
            {"saves": store["saves"], "conflicts": store["conflicts"], **(store["last"] or {})}, ensure_ascii=False
        ),
        language=None,
    )
    st.code("DRAFT " + json.dumps(result.draft, ensure_ascii=False), language=None)
    st.text_input("Another input", key="other-input")
    st.caption(f"runs {st.session_state['runs']} · version {store['version']}")
else:
    st.error(f"unknown case {case!r}")
