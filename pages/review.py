"""Review (reviewer, admin): compare annotators and the probe, settle the gold set, assign work,
and see agreement per dataset."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.base.errors import UserError
from core.base.types import Span
from core.components.heatmap import TokenView, token_heatmap
from core.orchestration.review_queue import next_unsettled, review_candidates
from core.text.editing import CURRENT_GOLD, SpanGroup, diff_sets, merge_groups, removed_spans
from core.text.markdown import md_escape
from core.text.readable import plural
from core.text.review_groups import disagreeing_ranges, group_range, group_summary, version_said
from core.text.spreadsheet import spreadsheet_safe
from pages.common import (
    active_probe,
    database,
    linked_answer,
    require_page,
    trace_or_tokenise,
)

user = require_page("review")
st.title("Review")

from core.orchestration.actions import review as acts
from core.orchestration.actions import shared

storage = database()
probe_info = active_probe()
probe_version = probe_info.probe_version if probe_info else None
datasets = shared.dataset_names(storage)
if not datasets:
    st.info("No datasets yet.")
    st.stop()

linked = linked_answer(".")
wanted = str(linked) if linked is not None else None
if wanted and st.session_state.get("rev-wanted-seen") != wanted:
    # opened from a link (Inspect's errors and label suspects): that answer, in its dataset
    st.session_state["rev-wanted-seen"] = wanted
    try:
        st.session_state["rev-dataset"] = shared.answer_dataset(storage, int(wanted))
        st.session_state["rev-generation"] = int(wanted)
        st.session_state["rev-force"] = True
    except UserError as exc:
        st.warning(md_escape(str(exc)))
dataset = st.selectbox("Dataset", datasets, key="rev-dataset")
from pages.annotate_parts import flagged_for_review

flagged_for_review(dataset)
SETTLE_TAB = "Settle gold"


def open_answer(generation_id: int) -> None:
    """Agreement's "Open answer #N": that answer, on the Settle gold tab (runs before the rerun)."""
    st.session_state["rev-generation"] = generation_id
    st.session_state["rev-force"] = True
    st.session_state["rev-tab"] = SETTLE_TAB


def _gold_saved(generation_id: int, following: int | None, done: str) -> None:
    """The end of a gold save: the message goes into the session, since one written in a callback
    or before a rerun vanishes with it, and the picker moves to the next unsettled answer."""
    if following is None:
        st.session_state["rev-flash"] = ("success", f"{done} Every other answer in this dataset has gold.")
        return
    st.session_state["rev-flash"] = ("success", f"{done} Now showing #{following}, the next unsettled answer.")
    st.session_state["rev-generation"] = following
    st.session_state["rev-force"] = True


def _refused(generation_id: int, exc: UserError) -> None:
    """A save that was not made: the message, and for a save that would remove gold spans,
    a confirmation button on the next run."""
    st.session_state["rev-flash"] = ("error", str(exc))
    if isinstance(exc, acts.GoldRemovalError):
        st.session_state["rev-confirm"] = generation_id


def save_merged(
    generation_id: int, groups: list[SpanGroup], expected_version: int, following: int | None, confirmed: bool = False
) -> None:
    """ "Save merged gold" (a callback: it runs before the page is drawn, so the picker can move).
    The picks are read from the radios' state here, so a pick made just before the click counts.
    A merge that would drop spans of the current gold is refused until confirmed."""
    try:
        picks = {i: st.session_state.get(f"pick-{generation_id}-{i}") for i in range(len(groups))}
        spans = merge_groups(groups, {i: p for i, p in picks.items() if p})
        version = acts.save_merged_gold(storage, user, generation_id, spans, expected_version, allow_removal=confirmed)
    except UserError as exc:
        _refused(generation_id, exc)
        return
    _gold_saved(generation_id, following, f"Gold saved. Answer #{generation_id} has gold version {version}.")


def take_whole(
    generation_id: int, name: str, expected_version: int, following: int | None, confirmed: bool = False
) -> None:
    """ "Use <name>'s spans as gold" (a callback, like save_merged)."""
    try:
        acts.take_annotator_set(storage, user, generation_id, name, expected_version, allow_removal=confirmed)
    except UserError as exc:
        _refused(generation_id, exc)
        return
    _gold_saved(generation_id, following, f"Gold saved. Answer #{generation_id}'s gold is now {name}'s set.")


def revert_to(generation_id: int, version: int, expected_version: int) -> None:
    """ "Revert gold to vN" (a callback): the old spans become a new gold version."""
    try:
        stored = acts.revert_gold(storage, user, generation_id, version, expected_version)
        st.session_state["rev-flash"] = (
            "success",
            f"Gold of answer #{generation_id} reverted to version {version} (stored as version {stored}).",
        )
    except UserError as exc:
        st.session_state["rev-flash"] = ("error", str(exc))


tab_review, tab_agreement, tab_assign = st.tabs(
    [SETTLE_TAB, "Agreement", "Assign work"], key="rev-tab", on_change="rerun"
)

with tab_agreement:
    from core.analysis.agreement import LABEL_COLUMNS, PAIR_COLUMNS, agreement_report
    from core.text.readable import readable_table

    items, annotators, generation_ids = acts.agreement_data(storage, dataset)
    if len(annotators) < 2:
        st.info("Agreement needs at least two annotators with labels in this dataset.")
    else:
        report = agreement_report(items, annotators)
        overall = report["overall"]
        cols = st.columns(4)
        for col, (name, key) in zip(
            cols,
            [
                ("Fleiss' κ", "fleiss_kappa"),
                ("Krippendorff's α", "krippendorff_alpha"),
                ("Gwet's AC1", "gwet_ac1"),
                ("tokens", "n_tokens"),
            ],
        ):
            value = overall.get(key)
            col.metric(name, "–" if value is None else (f"{value:.3f}" if isinstance(value, float) else value))
        pairs = pd.DataFrame(readable_table(report["pairs"], PAIR_COLUMNS))
        st.markdown("**Annotator pairs** — select a row to list the answers they disagree on")
        chosen = st.dataframe(
            spreadsheet_safe(pairs), hide_index=True, on_select="rerun", selection_mode="single-row", key="rev-pairs"
        )
        st.markdown("**Per label** (one label against the rest)")
        st.dataframe(
            pd.DataFrame(
                readable_table(list(report["per_label"].values()), LABEL_COLUMNS), index=list(report["per_label"])
            ),
            key="rev-labels",
        )
        judged = acts.judge_agreement_rows(storage, dataset)
        if judged:
            from core.analysis.agreement import JUDGE_COLUMNS

            st.markdown("**LLM judges** against each person and gold (the other side is the reference)")
            st.dataframe(
                spreadsheet_safe(pd.DataFrame(readable_table(judged, JUDGE_COLUMNS))), hide_index=True, key="rev-judges"
            )
        rows = chosen.selection.rows if chosen and chosen.selection else []
        if rows:
            pair = report["pairs"][rows[0]]
            key = f"{pair['a']}|{pair['b']}"
            indices = report["disagreements"].get(key, [])
            st.write(
                f"{plural(len(indices), 'answer')} where {md_escape(pair['a'])} and {md_escape(pair['b'])} differ:"
            )
            for index in indices[:50]:
                st.button(
                    f"Open answer #{generation_ids[index]}",
                    key=f"dis-{index}",
                    on_click=open_answer,
                    args=(generation_ids[index],),
                )

with tab_assign:
    names = acts.active_user_names(storage)
    with st.form("assign"):
        who = st.multiselect("Annotators", names)
        k = st.number_input("Annotators per answer (k)", 1, 10, 2)
        hours = st.number_input("Lease (hours)", 1.0, 24.0 * 30, 24.0)
        if st.form_submit_button("Assign"):
            try:
                made = acts.assign_work(storage, user, dataset, int(k), who, float(hours))
                st.success(f"Created {made} assignments.")
            except UserError as exc:
                st.error(md_escape(str(exc)))

with tab_review:
    flash = st.session_state.pop("rev-flash", None)
    if flash is not None:
        (st.success if flash[0] == "success" else st.error)(md_escape(flash[1]))
    queue_items = acts.review_queue(storage, user, dataset, probe_version)
    candidates = review_candidates(queue_items)  # unsettled first: a settled answer leaves the top
    settled = {i.generation_id for i in queue_items if i.has_gold}
    if not candidates:
        st.info("Nothing to review in this dataset yet.")
        st.stop()
    current = st.session_state.get("rev-generation")
    if current is not None and current not in candidates and current in [i.generation_id for i in queue_items]:
        candidates.insert(0, current)  # linked to, though nobody has labelled it yet
    if current not in candidates:
        current = candidates[0]
    if st.session_state.pop("rev-force", False):
        st.session_state["rev-pick"] = current  # a link (or a save) wins over the answer picked earlier
    if st.session_state.get("rev-pick") not in candidates:
        st.session_state.pop("rev-pick", None)
    current = st.selectbox(
        "Answer",
        candidates,
        key="rev-pick",
        format_func=lambda g: f"#{g}",
        **({} if "rev-pick" in st.session_state else {"index": candidates.index(current)}),
    )
    following = next_unsettled(candidates, settled, current)
    bundle = acts.review_bundle(storage, current, probe_version)
    trace = bundle.trace
    trace = trace_or_tokenise(current, trace)
    view = TokenView.from_trace(trace)
    completion = bundle.generation.completion
    sources: dict[str, list[Span]] = {name: spans for name, (_v, spans) in bundle.annotators.items()}
    if bundle.probe_spans:
        sources["probe"] = list(bundle.probe_spans)
    people = {name: spans for name, spans in sources.items() if name != "probe"}
    current_gold = bundle.gold[1] if bundle.gold else None
    if current_gold is not None:
        sources[CURRENT_GOLD] = list(current_gold)
    groups = diff_sets(people, current_gold) if people or current_gold else []
    ranges = disagreeing_ranges(groups)  # the rows' own ranges, so header and rows match
    if ranges:
        st.caption(
            "Disagreements at characters "
            + ", ".join(f"{a}–{b}" for a, b in ranges[:12])
            + (f" and {len(ranges) - 12} more" if len(ranges) > 12 else "")
        )
    for n, (name, spans) in enumerate(sources.items()):
        st.markdown(f"**{md_escape(name)}**")
        # widget keys never hold user text (a name with "__" broke the component's id)
        token_heatmap(view, key=f"rev-{current}-{n}", gold_spans=[s.__dict__ for s in spans], height=220)

    st.subheader("Gold set")
    gold_version = bundle.gold[0] if bundle.gold else 0
    picks: dict[int, str] = {}
    for index, group in enumerate(groups):
        options = [name for name, spans in group.spans.items() if spans] + ["none"]
        text = completion[group.start : group.end]
        label = (
            f"{md_escape(repr(text))} ({group_range(group)})"
            + ("" if not group.agree else " · all agree")
            + " — "
            + md_escape(group_summary(group, completion))
        )
        picks[index] = st.radio(label, options, horizontal=True, key=f"pick-{current}-{index}", format_func=md_escape)
    merged = merge_groups(groups, picks) if groups else []
    st.markdown("**Merged gold (preview)** — what saving stores, underlined in each label's colour")
    token_heatmap(view, key=f"rev-{current}-merged", gold_spans=[s.__dict__ for s in merged], height=220)
    st.caption(f"{len(merged)} spans in the merged gold set; current gold version {gold_version}.")
    confirming = st.session_state.get("rev-confirm") == current
    removing = removed_spans(current_gold or [], merged)
    if removing and not confirming:
        st.warning(
            md_escape(
                f"Saving this merge removes {plural(len(removing), 'span')} of the current gold: "
                + ", ".join(repr(completion[s.start : s.end]) for s in removing[:8])
            )
        )
    a, b = st.columns(2)
    if confirming:
        st.session_state.pop("rev-confirm", None)
        a.button(
            f"Save and remove {plural(len(removing), 'gold span')}",
            key=f"save-gold-confirm-{current}",
            type="primary",
            on_click=save_merged,
            args=(current, groups, gold_version, following, True),
        )
    else:
        a.button(
            "Save merged gold",
            key=f"save-gold-{current}",
            type="primary",
            on_click=save_merged,
            args=(current, groups, gold_version, following),
        )
    pick = b.selectbox("Or take one annotator's set whole", [None, *people], key=f"whole-{current}")
    if pick:
        b.button(
            f"Use {md_escape(pick)}'s spans as gold",
            key=f"use-{current}",
            on_click=take_whole,
            args=(current, pick, gold_version, following, confirming),
        )
    history = acts.gold_history(storage, current)
    if history:
        with st.expander(f"Gold history ({plural(len(history), 'version')})"):
            for entry in reversed(history):
                said = version_said(entry.spans, completion)
                st.markdown(
                    md_escape(
                        f"v{entry.version} · {entry.at:%Y-%m-%d %H:%M} · {entry.by or 'import'} · "
                        f"{entry.decision or entry.action} — {said}"
                    )
                )
                if entry.version != gold_version:
                    st.button(
                        f"Revert gold to v{entry.version}",
                        key=f"revert-{current}-{entry.version}",
                        on_click=revert_to,
                        args=(current, entry.version, gold_version),
                    )
