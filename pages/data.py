"""Data (admin): import with a preview, export as a download, batch generation, datasets."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import streamlit as st

from core.base.decoding import DecodingSettings
from core.base.errors import UserError
from core.text.filenames import widget_key
from core.text.markdown import md_escape
from core.text.readable import plural
from core.text.spreadsheet import spreadsheet_safe
from pages.common import database, model_label, require_page

user = require_page("data")
st.title("Data")

from core.orchestration import batch
from core.orchestration.actions import data as acts
from core.orchestration.actions import shared
from core.orchestration.actions.data import BadImportError, ServerPath
from pages.run_progress import RunView, run_progress

storage = database()
SPLITS = ["train", "validation", "test"]


def problems_table(problems: list[tuple[int, str]], unit: str = "line") -> None:
    st.dataframe(
        spreadsheet_safe(pd.DataFrame([{unit: n, "reason": reason} for n, reason in problems])), hide_index=True
    )


datasets = shared.datasets(storage)
annotators = acts.user_names(storage)
names = [d["name"] for d in datasets]

tab_import, tab_export, tab_batch, tab_sets, tab_judge = st.tabs(
    ["Import", "Export", "Batch generation", "Datasets", "LLM judge"]
)

# --- import -----------------------------------------------------------------------------------------
with tab_import:
    st.caption(
        "Interchange JSONL (the paper's `conversation` + `annotations`, or native `spans`), CSV or Parquet "
        "with the same columns, or a Hugging Face `datasets` folder on the server. Nothing is written "
        "until you press Import, and a file with any bad line imports nothing."
    )
    if "imp-flash" in st.session_state:
        st.success(st.session_state.pop("imp-flash"))
    uploaded = st.file_uploader("File", type=["jsonl", "json", "csv", "parquet"], key="imp-file")
    folder = st.text_input(
        "…or a file or `datasets` folder in the server's import folder",
        key="imp-folder",
        placeholder="my-dataset",
        help=f"Relative to `{acts.server_import_root()}` (PROBELENS_IMPORT_ROOT); nothing outside it can be read.",
    )
    source: bytes | ServerPath | None = (
        uploaded.getvalue() if uploaded is not None else ServerPath(folder.strip()) if folder.strip() else None
    )
    filename = uploaded.name if uploaded is not None else (Path(folder.strip()).name if folder.strip() else None)
    if source is not None:
        c1, c2, c3 = st.columns(3)
        target = c1.text_input("Dataset", value=Path(filename or "imported").stem, key="imp-dataset")
        split = c2.selectbox("Split (where a record names none)", SPLITS, key="imp-split")
        as_user = c3.selectbox(
            "Annotations become",
            [None, *annotators],
            key="imp-as",
            format_func=lambda n: "the gold set" if n is None else f"{n}'s set",
        )
        try:
            preview = acts.preview(source, filename, split)
        except UserError as exc:
            st.error(md_escape(str(exc)))
            preview = None
        if preview is not None:
            st.markdown(
                f"**{md_escape(preview.filename)}** · detected format **{preview.format}** · {preview.records} "
                f"records ({preview.duplicates} repeated in the file) · {preview.spans} spans"
            )
            m1, m2, m3 = st.columns(3)
            m1.metric("Spans found by index", preview.by_index)
            m2.metric("Spans found by text search", preview.by_search)
            m3.metric("Spans not found", len(preview.unmatched))
            if preview.unmatched:
                with st.expander(f"{len(preview.unmatched)} spans not found (they will be reported, never guessed)"):
                    st.dataframe(
                        spreadsheet_safe(pd.DataFrame(preview.unmatched, columns=[preview.unit, "span", "reason"])),
                        hide_index=True,
                    )
            if preview.rows:
                st.markdown("First records")
                st.dataframe(spreadsheet_safe(pd.DataFrame(preview.rows)), hide_index=True, key="imp-rows")
            if preview.problems:
                st.error(f"{len(preview.problems)} bad {preview.unit}s: nothing can be imported until they are fixed.")
                problems_table(preview.problems, preview.unit)
            elif st.button(f"Import into '{md_escape(target)}'", type="primary", key="imp-go"):
                bar = st.progress(0.0, text="checking…")

                def shown(stage: str, done: int, total: int, message: str = "") -> None:
                    bar.progress(min(1.0, done / total) if total else 0.0, text=f"{stage}: {message}")

                try:
                    result = acts.import_data(
                        storage, user, source, filename, dataset=target, split=split, as_user=as_user, progress=shown
                    )
                    st.session_state["imp-flash"] = (
                        f"Imported {plural(result.imported, 'answer')} into '{md_escape(result.dataset)}' ({result.duplicates} already "
                        f"there were skipped; {result.spans} spans)."
                    )
                    st.rerun()  # every tab's dataset list now includes it
                except BadImportError as exc:
                    bar.empty()
                    st.error(md_escape(str(exc)))
                    problems_table(exc.problems, exc.unit)
                except UserError as exc:
                    bar.empty()
                    st.error(md_escape(str(exc)))

# --- export -----------------------------------------------------------------------------------------
with tab_export:
    if not names:
        st.info("No datasets yet.")
    else:
        c1, c2, c3, c4 = st.columns(4)
        chosen = c1.selectbox("Dataset", names, key="exp-dataset")
        which = c2.selectbox(
            "Labels",
            ["gold", "annotator", "all"],
            key="exp-which",
            format_func={
                "gold": "the gold set",
                "annotator": "one annotator",
                "all": "everyone's (one column per person)",
            }.get,
        )
        who = c3.selectbox("Annotator", annotators, key="exp-who") if which == "annotator" else None
        fmt = c4.selectbox(
            "Format",
            ["jsonl", "conll", "parquet", "datasets"],
            key="exp-format",
            format_func={
                "jsonl": "interchange JSONL",
                "conll": "CoNLL / BIO",
                "parquet": "Parquet",
                "datasets": "datasets folder (zip)",
            }.get,
        )
        wanted = (chosen, which, who, fmt)
        if st.button("Prepare the file", key="exp-go"):
            try:
                st.session_state["exp-ready"] = (
                    wanted,
                    *acts.export(storage, user, chosen, format=fmt, which=which, annotator=who),
                )
            except UserError as exc:
                st.error(md_escape(str(exc)))
        ready = st.session_state.get("exp-ready")
        if ready and ready[0] == wanted:
            _w, content, file_name, mime, count = ready
            st.download_button(
                f"Download {md_escape(file_name)} ({plural(count, 'answer')})",
                content,
                file_name=file_name,
                mime=mime,
                key="exp-download",
                type="primary",
            )

# --- batch generation -------------------------------------------------------------------------------
with tab_batch:
    st.caption(
        'One prompt per line (.txt), or JSONL with `{"prompt": ...}` or `{"conversation": [...]}` per '
        "line, uploaded or pasted. A worker process answers them in batches, storing each answer with its "
        "tokens and the active probe's scores; close the page whenever you like. Results appear in the "
        "Annotate queue."
    )
    prompts_file = st.file_uploader("Prompts", type=["txt", "jsonl", "json"], key="batch-file")
    pasted = st.text_area(
        "…or paste prompts",
        key="batch-pasted",
        height=110,
        placeholder="One prompt per line, or one JSON object per line",
    )
    prompts = None
    source = (
        (prompts_file.getvalue(), prompts_file.name)
        if prompts_file is not None
        else (pasted, batch.pasted_name(pasted))
        if pasted.strip()
        else None
    )
    if source is not None:
        try:
            prompts = batch.parse_prompts(*source)
            st.caption(f"{len(prompts)} prompts, e.g. “{md_escape(prompts[0].messages[-1]['content'][:120])}”")
        except batch.BadPromptsError as exc:
            st.error(md_escape(str(exc)))
            problems_table(exc.problems)
        except UserError as exc:
            st.error(md_escape(str(exc)))
    with st.form("batch"):
        c1, c2 = st.columns(2)
        model = c1.text_input(
            "Model",
            value=model_label(),
            key="batch-model",
            help="the embedded model, a local folder, or a Hugging Face id already in the local cache",
        )
        target = c2.text_input("Dataset", value=f"batch-{dt.date.today().isoformat()}", key="batch-dataset")
        c3, c4, c5, c6, c7, c8 = st.columns(6)
        max_new = c3.number_input("Max new tokens", 1, 4096, 128, key="batch-max-new")
        temperature = c4.number_input("Temperature", 0.0, 5.0, 0.0, 0.1, key="batch-temperature")
        top_p = c5.number_input("Top-p", 0.01, 1.0, 1.0, 0.05, key="batch-top-p")
        seed = c6.number_input("Seed", 0, 2**31 - 1, 0, key="batch-seed")
        split = c7.selectbox("Split", SPLITS, key="batch-split")
        batch_size = c8.number_input(
            "Batch size",
            0,
            batch.MAX_BATCH,
            0,
            key="batch-size",
            help="answers generated at once; 0 = as many as the KV-cache budget holds",
        )
        go = st.form_submit_button("Start batch", type="primary", disabled=prompts is None)
    if go and prompts is not None:
        params = batch.BatchParams(
            prompts=[p.messages for p in prompts],
            dataset=target,
            split=split,
            model=None if model.strip() == model_label() else model.strip(),
            decoding=DecodingSettings(int(max_new), float(temperature), float(top_p), int(seed)),
            batch_size=int(batch_size) or None,
        )
        try:
            run_id = acts.start_batch(storage, user, params)
            st.toast(f"Batch run {run_id} started.")
        except UserError as exc:
            st.error(md_escape(str(exc)))

    def batch_finished(run: dict, _seen_running: bool) -> None:
        total = len((run["params"] or {}).get("prompts", []))
        if run["status"] == "succeeded":
            st.success(f"Batch run {run['id']} finished: {md_escape(run['message'])}.")
        elif run["status"] == "cancelled":
            st.warning(
                f"Batch run {run['id']} was cancelled ({md_escape(run['message'] or '')}); the answers finished "
                f"before it stopped are stored (of {total} prompts)."
            )
        else:
            st.error(f"Batch run {run['id']} failed: {md_escape(run['error'])}")

    run_progress(
        user,
        {
            "generate": RunView(
                progress=lambda run: (
                    f"Batch run {run['id']} → '{run['params'].get('dataset')}' · {run['message'] or 'starting'}"
                    + (f" · about {run['eta_s']:.0f} s left" if run["eta_s"] is not None else "")
                ),
                finished=batch_finished,
                cancel=lambda run: f"Cancel batch run {run['id']}",
                cancel_key=lambda run: f"batch-cancel-{run['id']}",
                cancelling="Cancel requested; stopping after the current token…",
            )
        },
    )

# --- datasets ---------------------------------------------------------------------------------------
with tab_sets:
    if not datasets:
        st.info("No datasets yet: import a file or run a batch.")
    else:
        frame = pd.DataFrame(
            [
                {
                    "dataset": d["name"],
                    "answers": d["answers"],
                    "labelled by anyone": d["labelled_by_anyone"],
                    "gold": d["gold"],
                    "hallucinated spans (gold)": d["hallucinated_spans"],
                    "created": d["created_at"],
                }
                for d in datasets
            ]
        )
        st.dataframe(spreadsheet_safe(frame), hide_index=True, key="sets-table")
        st.markdown("**Delete a dataset**")
        doomed = st.selectbox("Dataset to delete", names, key="del-dataset")
        info = next(d for d in datasets if d["name"] == doomed)
        st.caption(
            f"Deletes {plural(info['answers'], 'answer')} with every annotation set, span and probe score of them. "
            "It is recorded in the event log; it cannot be undone."
        )
        typed = st.text_input(
            f"Type the dataset's name ({md_escape(doomed)}) to confirm", key=widget_key("del-confirm", doomed)
        )
        if st.button("Delete permanently", key="del-go", disabled=typed.strip() != doomed):
            try:
                acts.delete_dataset(storage, user, doomed)
                st.session_state.pop(widget_key("del-confirm", doomed), None)
                st.toast(f"Deleted dataset '{md_escape(doomed)}'.")
                st.rerun()
            except UserError as exc:
                st.error(md_escape(str(exc)))

# --- the LLM judge ----------------------------------------------------------------------------------
with tab_judge:
    from pages.data_judge import judge_tab

    judge_tab(user, storage, names)
