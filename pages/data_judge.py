"""The Data page's *LLM judge* tab: judges, their instructions, reference documents, label runs.

Widgets and calls only; every action is in `core.orchestration.actions.data`. Judge settings
show the *name* of the variable holding the API key, never a key.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.base.errors import UserError
from core.orchestration.actions import data as acts
from core.orchestration.actions.data import LabelParams, ServerPath
from core.text.filenames import widget_key
from core.text.markdown import md_escape
from core.text.spreadsheet import spreadsheet_safe
from pages.run_progress import RunView, run_progress

SPLITS = ["(all)", "train", "validation", "test"]


def _judges_section(user, storage, overview: dict) -> None:
    st.markdown("**Judges** — OpenAI-compatible chat endpoints; each labels as its own *model* account")
    if overview["judges"]:
        rows = [
            {
                "judge": j["name"],
                "base URL": j["base_url"],
                "model": j["model"],
                "API key from": j["api_key_env"] or "(none)",
                "input $/M": j["price_input_per_m"],
                "output $/M": j["price_output_per_m"],
                "concurrency": j["concurrency"],
                "timeout s": j["timeout_s"],
                "account": j["bot_name"],
            }
            for j in overview["judges"]
        ]
        st.dataframe(spreadsheet_safe(pd.DataFrame(rows)), hide_index=True, key="judge-table")
    with st.form("judge-add"):
        c1, c2, c3 = st.columns(3)
        name = c1.text_input("Name", key="judge-name")
        base_url = c2.text_input("Base URL", placeholder="http://127.0.0.1:8000/v1", key="judge-url")
        model = c3.text_input("Model", key="judge-model")
        c4, c5, c6, c7, c8 = st.columns(5)
        key_env = c4.text_input("API key variable", help="the NAME of the environment variable", key="judge-env")
        price_in = c5.number_input("Input $/M tokens", 0.0, value=None, key="judge-pin")
        price_out = c6.number_input("Output $/M tokens", 0.0, value=None, key="judge-pout")
        concurrency = c7.number_input("Concurrency", 1, 64, 4, key="judge-conc")
        timeout = c8.number_input("Timeout (s)", 1.0, 3600.0, 120.0, key="judge-timeout")
        if st.form_submit_button("Add judge"):
            try:
                acts.add_judge(
                    storage,
                    user,
                    name.strip(),
                    base_url=base_url,
                    model=model,
                    api_key_env=key_env.strip() or None,
                    price_input_per_m=price_in,
                    price_output_per_m=price_out,
                    concurrency=int(concurrency),
                    timeout_s=float(timeout),
                )
                st.rerun()
            except UserError as exc:
                st.error(md_escape(str(exc)))
    if overview["judges"]:
        c1, c2 = st.columns([3, 1])
        doomed = c1.selectbox("Judge to remove", [j["name"] for j in overview["judges"]], key="judge-doomed")
        if c2.button("Remove judge", key="judge-remove", help="its labels stay; its account is deactivated"):
            try:
                acts.remove_judge(storage, user, doomed)
                st.rerun()
            except UserError as exc:
                st.error(md_escape(str(exc)))


def _instructions_section(user, storage, overview: dict) -> None:
    current = overview["instructions"]
    st.markdown(
        f"**Instructions** — version {current['version']}"
        + (f" by {md_escape(current['author'])}" if current["author"] else " (built in)")
        + "; the team's guidelines are added to them"
    )
    body = st.text_area("Instructions", value=current["body"], height=220, key=f"judge-instr-{current['version']}")
    if st.button("Save as a new version", key="judge-instr-save", disabled=body == current["body"]):
        try:
            version = acts.save_judge_instructions(storage, user, body)
            st.toast(f"Saved instructions version {version}.")
            st.rerun()
        except UserError as exc:
            st.error(md_escape(str(exc)))


def _references_section(user, storage, overview: dict) -> None:
    st.markdown("**Reference documents** — the evidence the judge is given (Markdown, text, JSONL title/text/url)")
    if overview["collections"]:
        st.dataframe(spreadsheet_safe(pd.DataFrame(overview["collections"])), hide_index=True, key="ref-table")
    else:
        st.caption("No references: the judge uses its own knowledge.")
    uploaded = st.file_uploader("Reference file", type=["md", "markdown", "txt", "jsonl"], key="ref-file")
    folder = st.text_input(
        "…or a file or folder in the server's import folder",
        key="ref-folder",
        help=f"Relative to `{acts.server_import_root()}` (PROBELENS_IMPORT_ROOT); nothing outside it can be read.",
    )
    collection = st.text_input("Collection name", value="references", key="ref-name")
    source: bytes | ServerPath | None = (
        uploaded.getvalue() if uploaded is not None else (ServerPath(folder.strip()) if folder.strip() else None)
    )
    if st.button("Import references", key="ref-go", disabled=source is None):
        try:
            assert source is not None
            found = acts.import_references(
                storage, user, source, uploaded.name if uploaded is not None else None, collection
            )
            st.success(
                f"Imported {found['documents']} documents ({found['passages']} passages) into "
                f"'{md_escape(found['collection'])}'; {found['skipped']} already there."
            )
        except UserError as exc:
            st.error(md_escape(str(exc)))


def _label_section(user, storage, overview: dict, datasets: list[str]) -> None:
    st.markdown("**Label run** — the judge pre-annotates a dataset; people then check")
    judge_names = [j["name"] for j in overview["judges"]]
    with st.form("label-run"):
        c1, c2, c3, c4 = st.columns(4)
        dataset = c1.selectbox("Dataset", datasets, key="label-dataset")
        split = c2.selectbox("Split", SPLITS, key="label-split")
        # keyed by the choices: a judge added since the last run is offered at once
        judge = c3.selectbox("Judge", judge_names, key=widget_key("label-judge", "\n".join(judge_names)))
        newest = int(overview["instructions"]["version"])
        version = c4.number_input(
            "Instructions version", 0, newest, value=newest, key=f"label-version-{newest}", help="0: the built-in text"
        )
        only = st.checkbox("Only answers nobody labelled", key="label-only")
        go = st.form_submit_button("Start label run", type="primary", disabled=not (judge_names and datasets))
    if go and not (dataset and judge):
        st.error("Choose a dataset and a judge.")
    elif go:
        params = LabelParams(dataset, judge, None if split == "(all)" else split, only, int(version))
        try:
            run_id = acts.start_label(storage, user, params)
            st.toast(f"Label run {run_id} started.")
        except UserError as exc:
            st.error(md_escape(str(exc)))

    def finished(run: dict, _seen: bool) -> None:
        if run["status"] == "succeeded":
            st.success(f"Label run {run['id']} finished: {md_escape(run['message'])}.")
        elif run["status"] == "cancelled":
            st.warning(f"Label run {run['id']} was cancelled; the answers judged before it stopped are stored.")
        else:
            st.error(f"Label run {run['id']} failed: {md_escape(run['error'] or '')}")

    run_progress(
        user,
        {
            "label": RunView(
                progress=lambda run: f"Label run {run['id']} · {md_escape(run['message'] or 'starting')}",
                finished=finished,
                cancel=lambda run: f"Cancel label run {run['id']}",
                cancel_key=lambda run: f"label-cancel-{run['id']}",
            )
        },
    )


def judge_tab(user, storage, datasets: list[str]) -> None:
    """The whole tab (admins: the Data page is theirs)."""
    try:
        overview = acts.judge_overview(storage, user)
    except UserError as exc:
        st.error(md_escape(str(exc)))
        return
    _judges_section(user, storage, overview)
    st.divider()
    _instructions_section(user, storage, overview)
    st.divider()
    _references_section(user, storage, overview)
    st.divider()
    _label_section(user, storage, overview, datasets)
