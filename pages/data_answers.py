"""The Data page's Answers tab: choose answers of a dataset, then act on them all at once
(assign to an annotator, skip for an annotator, move to a split) or delete one with its
annotations, as Label Studio's and Argilla's data managers do. Every action is logged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from core.base.errors import UserError
from core.orchestration.actions import data as acts
from core.text.markdown import md_escape
from core.text.readable import plural
from core.text.spreadsheet import spreadsheet_safe
from pages.common import SignedIn, fitted_columns

SPLITS = ["train", "validation", "test"]


def _act(what: Callable[[], Any], said: Callable[[Any], str]) -> None:
    """Run one action; its outcome as a toast (and a rerun, so the table shows it) or its one message."""
    try:
        result = what()
    except UserError as exc:
        st.error(md_escape(str(exc)))
        return
    st.toast(md_escape(said(result)))
    st.rerun()


def answers_tab(storage, user: SignedIn, names: list[str], annotators: list[str]) -> None:
    if not names:
        st.info("No datasets yet: import a file or run a batch.")
        return
    dataset = st.selectbox("Dataset", names, key="ans-dataset")
    rows = acts.answers(storage, user, dataset)
    st.caption(f"{plural(len(rows), 'answer')} (the first 2,000). Select rows, then act on all of them below.")
    picked = st.dataframe(
        spreadsheet_safe(pd.DataFrame(rows)),
        hide_index=True,
        on_select="rerun",
        selection_mode="multi-row",
        key=f"ans-table-{dataset}",
        column_config=fitted_columns(rows),
    )
    chosen = [rows[i]["id"] for i in (picked.selection.rows if picked and picked.selection else []) if i < len(rows)]
    if not chosen:
        st.caption("No answer selected.")
        return
    st.markdown(f"**{plural(len(chosen), 'answer')} selected**")
    a1, a2, a3 = st.columns(3)
    who = a1.selectbox("Annotator", annotators, key="ans-who")
    if a1.button("Assign to them", key="ans-assign", disabled=not who):
        _act(lambda: acts.bulk_assign(storage, user, chosen, who), lambda n: f"Assigned {n} new to {who}.")
    if a1.button("Skip for them", key="ans-skip", disabled=not who):
        _act(lambda: acts.bulk_skip(storage, user, chosen, who), lambda n: f"Skipped {n} for {who}.")
    split = a2.selectbox("Split", SPLITS, key="ans-split")
    if a2.button("Move to this split", key="ans-move"):
        _act(lambda: acts.bulk_split(storage, user, chosen, split), lambda n: f"Moved {n} to {split}.")
    if len(chosen) == 1:
        doomed = chosen[0]
        a3.caption(f"Deletes #{doomed} with every annotation set, span and score of it. It cannot be undone.")
        sure = a3.checkbox(f"Yes, delete answer #{doomed}", key=f"ans-sure-{doomed}")
        if a3.button("Delete answer", key="ans-delete", disabled=not sure):
            _act(lambda: acts.delete_answer(storage, user, doomed), lambda _: f"Deleted answer #{doomed}.")
    else:
        a3.caption("Select one answer to delete it.")
