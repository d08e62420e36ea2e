"""Generate: ask a question and watch the answer stream in, each token coloured by its risk."""

from __future__ import annotations

import math

import streamlit as st

from core.base.decoding import DecodingSettings
from core.base.errors import UserError
from core.components.heatmap import TokenView, token_heatmap
from core.engine.limits import MAX_ANSWER_CHARS, MAX_PROMPT_CHARS
from core.engine.live import EarlyStopRule, LiveGeneration
from core.orchestration.actions import generate as acts
from core.orchestration.actions import shared
from core.probes.pipeline import spans_from_scores
from core.text.endings import ending
from core.text.markdown import md_escape
from core.text.tokens import whole_word_spans
from pages.common import (
    active_probe,
    database,
    language_model,
    probe_versions,
    require_page,
)
from pages.generate_parts import answer_links, earlier_answers, keep_in_history

user = require_page("generate")
st.title("Generate")

lm = language_model()
active = active_probe()
versions = probe_versions()

with st.expander("Settings", expanded=False):
    c1, c2, c3, c4 = st.columns(4)
    max_new_tokens = c1.number_input("Max new tokens", 1, 4096, 160, key="gen-max")
    temperature = c2.number_input("Temperature (0 = greedy)", 0.0, 2.0, 0.7, 0.1, key="gen-temp")
    top_p = c3.number_input("Top-p", 0.05, 1.0, 0.95, 0.05, key="gen-top-p")
    seed = c4.number_input("Seed", 0, 2**31 - 1, 0, key="gen-seed")
    c5, c6, c7 = st.columns([1, 2, 1.4])  # the early-stop choices are long: give them room, never cut them off
    options = [None, *versions]
    chosen = c5.selectbox(
        "Probe",
        options,
        index=options.index(active.probe_version) if active else 0,
        key="gen-probe",
        format_func=lambda v: (
            "none (no scores)" if v is None else f"v{v}" + (" (active)" if active and v == active.probe_version else "")
        ),
    )
    early_kind = c6.selectbox(
        "Early stop",
        ["off", "token", "span"],
        key="gen-early",
        format_func={
            "off": "Off",
            "token": "When a token's risk is too high",
            "span": "When an entity span's risk is too high",
        }.get,
    )
    early_threshold = c7.slider("Early-stop threshold", 0.5, 1.0, 0.9, 0.01, key="gen-early-threshold")
    dataset_name = st.text_input("Save answers to dataset", "playground", key="gen-dataset")

probe_info = active_probe(chosen) if chosen is not None else None
if chosen is not None and probe_info is None:
    st.warning(f"Probe v{chosen} does not match the loaded model; answers will not be scored.")
threshold = st.slider(
    "Risk threshold",
    0.0,
    1.0,
    0.5,
    0.01,
    key="gen-threshold",
    help=(
        "Sets the summary under the answer (tokens over it, riskiest spans) and the span early-stop "
        "floor. The slider in the heatmap's legend starts here and outlines the tokens at or over it "
        "in the text as you move it, without reloading the page."
    ),
)
if not versions or (active is None and chosen is None):
    st.info(shared.colour_reason(database(), None))  # why: the seed/retrain run's stage, or what is missing
elif probe_info is not None:
    st.caption(f"Scoring with probe v{probe_info.probe_version} · layer {probe_info.layer}")
else:
    st.caption("Not scoring: choose a probe in Settings to colour tokens by risk.")

mode = st.radio(
    "Mode",
    ["Ask a question", "Score a pasted conversation"],
    horizontal=True,
    key="gen-mode",
    label_visibility="collapsed",
)


def _save(snapshot, messages, probe_version):
    """Runs on the worker thread when the answer is finished: nothing is lost if the page closes."""
    return acts.save_answer(
        database(),
        user,
        dataset_name,
        [*messages, {"role": "assistant", "content": snapshot.text}],
        snapshot.trace,
        model_id=lm.model_id,
        probe_version=probe_version,
        extra=acts.finished_answer_extra(snapshot.finish_reason, snapshot.stop_note),
    )


def save_pasted(conversation: list[dict[str, str]], trace, probe_version: int | None) -> int:
    """Store a scored pasted conversation (with its tokens and scores) so the team can label it."""
    return acts.save_answer(
        database(),
        user,
        dataset_name,
        conversation,
        trace,
        model_id=lm.model_id,
        probe_version=probe_version,
        source="imported",
    )


def start_generation(question: str) -> None:
    version = probe_info.probe_version if probe_info is not None else None
    messages = [{"role": "user", "content": question}]
    rule = (
        EarlyStopRule(early_kind, early_threshold, span_floor=threshold) if early_kind != "off" and probe_info else None
    )
    live = LiveGeneration(
        lm,
        messages,
        decoding=DecodingSettings(int(max_new_tokens), float(temperature), float(top_p), int(seed)),
        probe=probe_info,  # whole: a LoRA probe's model generates
        early_stop=rule,
        on_finish=lambda snap: _save(snap, messages, version),
    )
    st.session_state["live"] = live.start()
    st.session_state["gen-focus"] = None


def summary(trace, text: str) -> None:
    if trace.scores is None:
        return
    scores = [s for s in trace.scores if not math.isnan(s)]
    over = sum(1 for s in scores if s >= threshold)
    c1, c2, c3 = st.columns(3)
    c1.metric("Tokens", len(trace.token_ids))
    c2.metric("Over threshold", over)
    c3.metric("Max risk", f"{max(scores):.2f}" if scores else "–")
    runs = spans_from_scores(trace.offsets, [s if not math.isnan(s) else 0.0 for s in trace.scores], threshold)
    spans = whole_word_spans(text, runs)  # a run over the threshold inside a word names the whole word
    if spans:
        st.markdown("**Riskiest spans** (click to scroll to it)")
        ranked = sorted(spans, key=lambda s: -s[2])[:8]
        cols = st.columns(min(4, len(ranked)))
        for n, (start, end, risk) in enumerate(ranked):
            token_index = next(i for i, (s, e) in enumerate(trace.offsets) if e > start)
            label = f"{md_escape(repr(text[start:end][:40]))} · {risk:.2f}"
            if cols[n % len(cols)].button(label, key=f"risk-span-{n}"):
                st.session_state["gen-focus"] = token_index


live: LiveGeneration | None = st.session_state.get("live")

if mode == "Ask a question":
    question = st.chat_input(
        "Ask the model a question", disabled=bool(live and live.running), max_chars=MAX_PROMPT_CHARS
    )
    if question:
        try:
            start_generation(question)
            live = st.session_state["live"]
        except UserError as exc:
            st.error(md_escape(str(exc)))
else:
    with st.form("score-form"):
        prompt_text = st.text_area("User message", height=80, max_chars=MAX_PROMPT_CHARS)
        answer_text = st.text_area("Assistant answer to score", height=160, max_chars=MAX_ANSWER_CHARS)
        scored = st.form_submit_button("Score")
    if scored:
        if probe_info is None:
            st.error("There is no active probe to score with.")
        elif not prompt_text.strip() or not answer_text.strip():
            st.error("Give both the user message and the answer.")
        else:
            try:
                st.session_state["pasted"] = acts.score_pasted(lm, probe_info, prompt_text, answer_text)
                st.session_state.pop("pasted-saved", None)
            except UserError as exc:  # too long for the model: one message, nothing scored
                st.error(md_escape(str(exc)))
    pasted = st.session_state.get("pasted")
    if pasted:
        conversation, trace = pasted.conversation, pasted.trace
        token_heatmap(
            TokenView.from_trace(trace),
            threshold=threshold,
            threshold_control=True,
            key="pasted-heatmap",
            focus=st.session_state.get("gen-focus"),
            height=420,
        )
        summary(trace, pasted.text)
        if st.button(f"Save to dataset '{md_escape(dataset_name)}' for annotation", key="pasted-save"):
            try:
                st.session_state["pasted-saved"] = save_pasted(
                    conversation, trace, probe_info.probe_version if probe_info else None
                )
            except UserError as exc:
                st.error(md_escape(str(exc)))
        saved = st.session_state.get("pasted-saved")
        if saved is not None:
            st.page_link(
                "pages/annotate.py",
                label=f"Open answer #{saved} in Annotate",
                icon=":material/label:",
                query_params={"generation": str(saved)},
            )
    st.stop()

earlier_answers(live)

if live is None:
    st.caption(
        "Ask a question below. Tokens appear as they are generated, coloured from white (low risk) "
        "through orange to deep red (high risk)."
    )
    st.stop()

st.chat_message("user").markdown(md_escape(live.messages[-1]["content"], inline=False))
polling = live.running


def outcome(snap) -> None:
    """Why the answer ended, above its heatmap: never below, where the pinned chat input can hide it."""
    if snap.error:
        st.error(md_escape(snap.error))
    sentence = ending(snap.finish_reason, snap.stop_note)
    if sentence:
        (st.warning if snap.finish_reason == "early_stop" else st.info)(md_escape(sentence), icon=":material/flag:")


@st.fragment(run_every=0.05 if polling else None)
def live_view() -> None:
    snap = live.snapshot()
    if snap.running and st.button("Stop", icon=":material/stop:", key="stop-generation", type="primary"):
        live.stop()
    if not snap.running:
        outcome(snap)
    token_heatmap(
        TokenView.from_trace(snap.trace),
        threshold=threshold,
        threshold_control=True,
        key="gen-heatmap",
        doc_id=live.id,
        focus=st.session_state.get("gen-focus"),
        height=480,
        produced_at=snap.produced_at[-1] * 1000 if snap.produced_at else None,
    )
    if snap.running:
        st.caption(f"Generating… {len(snap.trace.token_ids)} tokens")
    elif polling:
        st.rerun(scope="app")


live_view()

if not live.running:
    snap = live.snapshot()
    summary(snap.trace, snap.text)
    keep_in_history(live, snap)
    if isinstance(snap.result, int):
        answer_links(snap.result, database(), user)
