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
from pages.annotate_parts import comments_panel, guidelines_panel, skip_controls
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
if current is not None and current == st.session_state.get("ann-pinned") and current not in ids:
    ids.insert(0, current)
if current not in ids:
    current = ids[0] if ids else None
if current is None:
    st.info("Nothing in this queue. Generate answers, import a dataset, or change the filters.")
    guidelines_panel(user)
    st.stop()

# The queue spans the page so its text can be read; its expander folds it away while editing
# (a constant label keeps the fold across reruns). Guidelines, Skip and comments sit beside the editor.
with st.expander("Queue", expanded=True):
    table = pd.DataFrame(
        [
            {
                "#": i.generation_id,
                "answer": i.preview,
                "why": shown.reasons[i.generation_id],
                "risk": i.max_score,
                "flag": "⚑" if i.generation_id in flagged else "",
            }
            for i in items
        ]
    )
    picked = st.dataframe(
        spreadsheet_safe(table),
        hide_index=True,
        height=250,
        on_select="rerun",
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
    rows = picked.selection.rows if picked and picked.selection else []
    if rows and st.session_state.get("ann-last-row") != rows[0] and rows[0] < len(items):
        st.session_state["ann-last-row"] = rows[0]
        current = items[rows[0]].generation_id
st.session_state["ann-current"] = current
st.session_state["ann-wanted-seen"] = str(current)
if st.query_params.get("generation") != str(current):
    st.query_params["generation"] = str(current)  # a reload reopens this answer (and its draft)


def move_on(after: int = current, queue_ids: tuple[int, ...] = tuple(ids)) -> None:
    """Open the answer after `after` in the queue this page showed (Save & next, Skip); with no
    other answer, the first of the queue as it is now (nothing, if `after` has left it)."""
    if after in queue_ids and len(queue_ids) > 1:
        st.session_state["ann-current"] = queue_ids[(queue_ids.index(after) + 1) % len(queue_ids)]
    else:
        st.session_state["ann-current"] = None


opened = acts.open_answer(storage, user, current, probe_version)
generation, trace, where = opened.generation, opened.trace, opened.where
my_spans, version, scores, no_colours = opened.my_spans, opened.version, opened.scores, opened.no_colours

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
            "passages it cites."
        )
        suggestions = suggestions + opened.judge_suggestions
    conflict_key = f"conflict-{current}"

    def store(saved: dict, generation_id: int = current, loaded_version: int = version) -> None:
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
        height=520,
        on_save=store,
    )
    flash = st.session_state.pop("ann-flash", None)
    if flash and flash[0] == "saved":
        st.toast(md_escape(flash[1]))
    elif flash:
        st.error(md_escape(flash[1]))
    st.slider("Suggestion threshold", 0.0, 1.0, 0.5, 0.01, key="ann-threshold")

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
