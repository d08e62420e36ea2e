"""Annotate: a queue of answers and a keyboard-first span editor; one save per answer.

The answer open is kept in the URL (`?generation=N`), so a reload reopens it with its draft;
a link still wins. Guidelines, skip and comments are in pages/annotate_parts.py.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.base.errors import UserError
from core.components.heatmap import TokenView, token_heatmap
from core.text.editing import suggest_spans
from core.text.endings import ending
from core.text.markdown import md_escape
from core.text.readable import plural
from core.text.spreadsheet import spreadsheet_safe
from pages.annotate_parts import comments_panel, guidelines_panel, judge_evidence_panel, skip_controls
from pages.common import (
    active_probe,
    database,
    linked_answer,
    require_page,
    trace_or_tokenise,
)

user = require_page("annotate")
st.title("Annotate")

from core.orchestration.actions import annotate as acts
from core.orchestration.actions import shared

storage = database()
probe_info = active_probe()
probe_version = probe_info.probe_version if probe_info else None

datasets = shared.dataset_names(storage)

c1, c2, c3, c4, c5 = st.columns([1, 1, 1.3, 1.3, 2])
dataset = c1.selectbox(
    "Dataset", [None, *datasets], format_func=lambda d: "all datasets" if d is None else d, key="ann-dataset"
)
split = c2.selectbox(
    "Split", [None, "train", "validation", "test"], format_func=lambda s: s or "all splits", key="ann-split"
)
label_state = c3.selectbox(
    "Show",
    [None, "second", "unlabelled", "mine", "skipped", "gold", "any"],
    key="ann-state",
    format_func={
        None: "my queue (assigned + unlabelled)",
        "second": "needs a second annotator",
        "any": "everything",
        "unlabelled": "unlabelled",
        "mine": "labelled by me",
        "skipped": "skipped by me",
        "gold": "with gold",
    }.get,
)
sort = c4.selectbox(
    "Order",
    ["assigned", "uncertainty", "risk", "disagreement", "newest"],
    key="ann-sort",
    format_func={
        "assigned": "assigned to me first",
        "uncertainty": "probe most uncertain",
        "risk": "highest risk",
        "disagreement": "most disagreement",
        "newest": "newest",
    }.get,
)

search = c5.text_input(
    "Search",
    key="ann-search",
    max_chars=acts.MAX_SEARCH_CHARS,
    placeholder="words in the question or answer, or #N",
)

shown = acts.open_queue(
    storage,
    user,
    dataset=dataset,
    split=split,
    label_state=label_state,
    sort=sort,
    probe_version=probe_version,
    search=search,
)
if shown.error:
    st.error(md_escape(shown.error))
items, progress, flagged = shown.items, shown.progress, shown.flagged

done, assigned = progress.get("done", 0), progress.get("assigned", 0)
st.progress(
    min(1.0, done / assigned) if assigned else 0.0,
    text=f"{done} done of {assigned} assigned to you" if assigned else f"{plural(done, 'answer')} labelled by you",
)
st.caption(shown.summary)
if label_state is None and shown.needs_second:
    st.button(
        f"Show the {plural(shown.needs_second, 'answer')} that {'needs' if shown.needs_second == 1 else 'need'} "
        "a second annotator",
        key="ann-go-second",
        on_click=lambda: st.session_state.update({"ann-state": "second"}),
    )

ids = [item.generation_id for item in items]
# The URL names the answer open (a link, or this page after a reload): it wins over the answer
# this session had open unless it is that answer already (every run writes the open one back).
# An answer opened that way stays open even if the filters leave it out ("pinned"), until the
# filters change or another answer is opened.
linked = linked_answer("; showing your queue instead.")
wanted = str(linked) if linked is not None else None
filters = (dataset, split, label_state, sort, search)
if st.session_state.get("ann-filters") != filters:
    st.session_state["ann-filters"] = filters
    st.session_state.pop("ann-pinned", None)
current = st.session_state.get("ann-current")
if wanted and st.session_state.get("ann-wanted-seen") != wanted:
    current = st.session_state["ann-pinned"] = int(wanted)
    st.session_state["ann-pinned-at"] = 0
if current is not None and current == st.session_state.get("ann-pinned") and current not in ids:
    # a saved answer leaves "my queue": it stays open, on the row it had (Save is not Save & next)
    ids.insert(min(int(st.session_state.get("ann-pinned-at", 0)), len(ids)), current)
if current not in ids:
    current = ids[0] if ids else None
if current is None:
    st.info("Nothing in this queue. Generate answers, import a dataset, or change the filters.")
    guidelines_panel(user)
    st.stop()

# The queue spans the page so its text can be read; its expander folds it away while editing
# (a constant label keeps the fold across reruns). Guidelines, Skip and comments sit beside the editor.
by_id = {i.generation_id: i for i in items}
opened = acts.open_answer(storage, user, current, probe_version)
generation, trace, where = opened.generation, opened.trace, opened.where
my_spans, version, scores, no_colours = opened.my_spans, opened.version, opened.scores, opened.no_colours


def pick_row() -> None:
    """A click on a queue row opens that row's answer: the row is read against the ids the
    table showed (the queue may have changed since), never against the queue as it is now."""
    state = st.session_state.get("ann-table")
    rows = list(state["selection"]["rows"]) if state else []
    shown_ids = st.session_state.get("ann-table-ids", [])
    if rows and rows[0] < len(shown_ids):
        st.session_state["ann-current"] = shown_ids[rows[0]]


with st.expander("Queue", expanded=True):
    table = pd.DataFrame(
        [
            {
                "#": gid,
                "answer": by_id[gid].preview if gid in by_id else generation.completion[: acts.PREVIEW_CHARS],
                "why": shown.reasons.get(gid, "open (no longer in this queue)"),
                "risk": by_id[gid].max_score if gid in by_id else None,
                "flag": "⚑" if gid in flagged else "",
            }
            for gid in ids
        ]
    )
    # the ticked row is always the open answer (a save, a skip or a link moves both)
    st.session_state["ann-table-ids"] = list(ids)
    st.session_state["ann-table"] = {"selection": {"rows": [ids.index(current)], "columns": [], "cells": []}}
    st.dataframe(
        spreadsheet_safe(table),
        hide_index=True,
        height=250,
        on_select=pick_row,
        selection_mode="single-row",
        key="ann-table",
        width="stretch",
        column_config={
            "#": st.column_config.NumberColumn(width="small"),
            "answer": st.column_config.TextColumn(width="large"),
            "why": st.column_config.TextColumn(width="medium"),
            "risk": st.column_config.NumberColumn(format="%.2f", width="small"),
            "flag": st.column_config.TextColumn(width="small"),
        },
    )
st.session_state["ann-current"] = current
st.session_state["ann-wanted-seen"] = str(current)
if st.query_params.get("generation") != str(current):
    st.query_params["generation"] = str(current)  # a reload reopens this answer (and its draft)


def start_rescore(version: int) -> None:
    """An admin's Re-score (a callback): the run fills the scores; the colour note follows it."""
    try:
        run_id = acts.start_rescore(storage, user, version)
    except UserError as exc:
        st.session_state["ann-flash"] = ("error", str(exc))
        return
    st.session_state["ann-flash"] = ("saved", f"Re-score run {run_id} started: colours appear as it reaches answers.")


def move_on(after: int = current, queue_ids: tuple[int, ...] = tuple(ids)) -> None:
    """Open the answer after `after` in the queue this page showed (Save & next, Skip); with no
    other answer, the first of the queue as it is now (nothing, if `after` has left it)."""
    if after in queue_ids and len(queue_ids) > 1:
        st.session_state["ann-current"] = queue_ids[(queue_ids.index(after) + 1) % len(queue_ids)]
    else:
        st.session_state["ann-current"] = None


right, side = st.columns([5, 2])
with side:
    guidelines_panel(user)
    skip_controls(user, current, move_on)
    comments_panel(user, current)
with right:
    st.markdown(f"**Answer #{current}** · {md_escape(where)}")
    ended = ending(generation.extra.get("finish_reason"), generation.extra.get("stop_note"))
    if ended and isinstance(generation.extra.get("finish_reason"), str):
        st.caption(f"When it was generated: {md_escape(ended)}")
    if no_colours:
        st.info(no_colours)
    if opened.prefilled:
        st.caption(
            f"A demo answer to practise on: the editor starts from its gold (version {opened.gold_version}, "
            "the demo's labelling rule). Change what you disagree with and save: your own set is stored, "
            "the gold stays as it is."
        )
    if opened.rescore_version is not None and user.role == "admin":
        st.button(
            f"Re-score with probe v{opened.rescore_version}",
            key=f"ann-rescore-{current}",
            on_click=start_rescore,
            args=(opened.rescore_version,),
            help="Stores the probe's scores for every answer that lacks them (a background run, as after a promote).",
        )
    st.chat_message("user").markdown(
        md_escape(generation.prompt_messages[-1]["content"] if generation.prompt_messages else "", inline=False)
    )
    trace = trace_or_tokenise(current, trace)
    view = TokenView.from_trace(trace, scores=scores)
    threshold = st.session_state.get("ann-threshold", 0.5)
    suggestions = []
    if scores is not None:
        suggestions = [
            {"start": s.start, "end": s.end, "score": s.score}
            for s in suggest_spans(trace.offsets, scores, threshold, generation.completion)
        ]
    if opened.judge_suggestions:
        judges = sorted({s["source"] for s in opened.judge_suggestions})
        st.caption(
            f"{len(opened.judge_suggestions)} suggestions from the LLM judge {md_escape(', '.join(judges))}: "
            "Tab to one, A accepts it with the judge's label and note, R rejects it; hover for the note and the "
            "passages it cites, or open the judge's evidence below the editor."
        )
        suggestions = suggestions + opened.judge_suggestions
    conflict_key = f"conflict-{current}"

    def store(
        saved: dict, generation_id: int = current, loaded_version: int = version, queue_ids: list[int] = ids
    ) -> None:
        """The save, as a callback: it runs before the script body, so the body already
        renders the stored version (or the conflict) and never flashes a stale one."""
        from core.base.types import Span

        key = f"conflict-{generation_id}"
        spans = [Span(int(s["start"]), int(s["end"]), s["label"], s.get("note")) for s in saved.get("spans", [])]
        base = int(saved.get("base_version", loaded_version))
        try:
            stored = acts.save_annotation(storage, user, generation_id, spans, base)
        except UserError as exc:
            st.session_state["ann-flash"] = ("error", str(exc))
            return
        if isinstance(stored, acts.Conflict):
            st.session_state[key] = {
                "theirs": [
                    {"start": s.start, "end": s.end, "label": s.label, "note": s.note} for s in stored.their_spans
                ],
                "their_version": stored.their_version,
                "saved_by": stored.saved_by,
                "mine": saved.get("spans", []),
                "base_version": base,
            }
            return
        st.session_state.pop(key, None)
        st.session_state["ann-flash"] = ("saved", f"Saved answer #{generation_id} (version {stored.version}).")
        if saved.get("next"):
            move_on(generation_id)
        else:  # Save stays on the answer, even when the save takes it out of this queue
            st.session_state["ann-current"] = st.session_state["ann-pinned"] = generation_id
            st.session_state["ann-pinned-at"] = queue_ids.index(generation_id) if generation_id in queue_ids else 0

    conflict = st.session_state.get(conflict_key)
    editor_spans = [{"start": s.start, "end": s.end, "label": s.label, "note": s.note} for s in my_spans]
    editor_base = version
    if conflict:
        # While a conflict is open the editor keeps the person's own spans and the version
        # they started from: a rerun (or a remount) must never swap theirs in, and Enter
        # again is refused again until they choose mine or theirs.
        editor_spans, editor_base = conflict["mine"], int(conflict["base_version"])
    token_heatmap(
        view,
        mode="edit",
        key=f"editor-{current}",
        doc_id=f"gen-{current}",
        spans=editor_spans,
        suggestions=suggestions,
        base_version=editor_base,
        draft_key=f"probelens-draft-{user.id}-{current}",
        conflict=conflict,
        prefilled=opened.prefilled and not conflict,
        height=520,
        on_save=store,
    )
    flash = st.session_state.pop("ann-flash", None)
    if flash and flash[0] == "saved":
        st.toast(md_escape(flash[1]))
    elif flash:
        st.error(md_escape(flash[1]))
    st.slider("Suggestion threshold", 0.0, 1.0, 0.5, 0.01, key="ann-threshold")
    judge_evidence_panel(opened.judge_evidence)
    if opened.gold_spans and not opened.prefilled:
        with st.expander(f"Gold (version {opened.gold_version}): {plural(len(opened.gold_spans), 'span')}"):
            token_heatmap(
                view, key=f"ann-gold-{current}", gold_spans=[s.__dict__ for s in opened.gold_spans], height=200
            )

    if conflict:
        st.warning(
            f"{md_escape(conflict.get('saved_by') or 'Someone')} saved version {conflict['their_version']} of this "
            "answer after you opened it. Nothing of yours was overwritten: your edits are still in the "
            "editor. Compare below, then keep yours or take theirs."
        )
        mine_col, theirs_col = st.columns(2)
        mine_col.markdown("**Yours**")
        mine_col.dataframe(spreadsheet_safe(pd.DataFrame(conflict["mine"])), hide_index=True)
        theirs_col.markdown(f"**Theirs (version {conflict['their_version']})**")
        theirs_col.dataframe(spreadsheet_safe(pd.DataFrame(conflict["theirs"])), hide_index=True)
        keep, take = st.columns(2)
        if keep.button("Keep mine (save over theirs)", key=f"keep-{current}"):
            store({"spans": conflict["mine"], "base_version": int(conflict["their_version"])})
            st.rerun()
        if take.button("Take theirs", key=f"take-{current}"):
            st.session_state.pop(conflict_key, None)
            st.rerun()
