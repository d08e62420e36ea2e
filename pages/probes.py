"""Probes (admin): retrain on the team's labels, compare versions, promote / roll back, download / upload."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.base.errors import UserError
from core.probes.guard import small_validation_warning, version_validation_warning
from core.probes.stored_metrics import section, whole
from core.text.markdown import md_escape
from pages.common import database, language_model, model_label, require_page

user = require_page("probes")
st.title("Probes")

from core.orchestration import registry, retrain
from core.orchestration.actions import probes as acts
from core.orchestration.actions import runs, shared
from pages.run_progress import RunView, run_progress

storage = database()


def activate(version: int, done: str) -> None:
    """Promote (or roll back to) `version` and start the re-score that fills its heatmaps."""
    try:
        run_id = acts.activate(storage, user, version)
        st.toast(done.format(v=version, run=run_id))
        st.rerun()
    except UserError as exc:
        st.error(md_escape(str(exc)))


# --- retrain ------------------------------------------------------------------------------------

st.subheader("Retrain")
dataset_names = shared.dataset_names(storage)
chosen = st.multiselect("Datasets", dataset_names, placeholder="all datasets", key="rt-datasets")
sources = st.multiselect(
    "Labels to learn from",
    ["gold", "majority", "judge"],
    default=["gold", "majority"],
    key="rt-sources",
    help="gold: the reviewed set; majority: where no gold exists, the spans "
    "a strict majority of the answer's annotators (people) agree on; judge: where nobody did, "
    "the LLM judges' labels",
)
summary = retrain.label_summary(storage, chosen or None, tuple(sources) or ("gold", "majority"))
c1, c2, c3, c4 = st.columns(4)
c1.metric("Labelled answers", summary["answers"])
c2.metric("Train / validation", f"{summary['by_split'].get('train', 0)} / {summary['by_split'].get('validation', 0)}")
c3.metric("Gold / majority", f"{summary['by_source'].get('gold', 0)} / {summary['by_source'].get('majority', 0)}")
c4.metric("Hallucinated spans", summary["hallucinated_spans"])
validation = summary.get("validation", {})
small = small_validation_warning(
    validation.get("answers", 0), validation.get("hallucinated", 0), validation.get("supported", 0)
)
if summary["answers"] and small:
    st.warning(small, icon=":material/warning:")

with st.form("retrain"):
    lm = language_model()
    a, b, c, d = st.columns(4)
    layer = a.number_input(
        "Layer",
        0,
        lm.num_layers - 1,
        lm.default_layer,
        help=f"residual stream after this decoder block; default {lm.default_layer} (≈95% depth)",
    )
    epochs = b.number_input("Epochs (0 = auto)", 0, 10_000, 0)
    lr = c.number_input("Learning rate", 1e-5, 1.0, 1e-3, format="%.4f")
    seed = d.number_input("Seed", 0, 2**31 - 1, 0)
    kinds = registry.kind_choices()
    kind = st.radio("Probe kind", list(kinds), horizontal=True, key="rt-kind", format_func=kinds.get)
    e, f, g = st.columns(3)
    lora_rank = e.number_input("LoRA rank", 1, 256, 16, help="LoRA only")
    lora_first = f.number_input("Adapters from block", 0, lm.num_layers - 1, 0, help="LoRA only; up to the layer")
    kl_weight = g.number_input("KL weight", 0.0, 1000.0, 10.0, help="LoRA only: keeps generation as the base model's")
    n_train = summary["by_split"].get("train", 0)
    st.caption(retrain.time_estimate(n_train))
    pressed = st.form_submit_button("Retrain", type="primary")


def start(params: retrain.RetrainParams) -> None:
    try:
        run_id = acts.start_retrain(storage, user, params)
        st.session_state["probes-watching"] = run_id
        st.toast(f"Retrain run {run_id} started.")
    except UserError as exc:
        st.error(md_escape(str(exc)))


if pressed:
    params = retrain.RetrainParams(
        model=None,
        layer=int(layer),
        datasets=chosen or None,
        sources=sources or ["gold", "majority"],
        epochs=int(epochs) or None,
        lr=float(lr),
        seed=int(seed),
        kind=kind,
        lora_rank=int(lora_rank),
        lora_first_layer=int(lora_first),
        kl_weight=float(kl_weight),
    )
    same_as = retrain.unchanged_since(storage, params, summary)
    if same_as is None:
        start(params)
    else:
        st.session_state["rt-pending"] = (params, same_as)
pending = st.session_state.get("rt-pending")
if pending is not None:
    params, same_as = pending
    st.warning(
        f"Nothing has changed since v{same_as}: the same labels and the same settings. A retrain would "
        "give the same probe again.",
        icon=":material/info:",
    )
    go_col, skip_col = st.columns(2)
    if go_col.button("Retrain anyway", key="rt-anyway"):
        st.session_state.pop("rt-pending", None)
        start(params)
    if skip_col.button("Skip", key="rt-skip"):
        st.session_state.pop("rt-pending", None)
        st.rerun()

RUN_TITLES = {"retrain": "Retrain", "rescore": "Re-score"}


def run_finished(title: str):
    """How a finished run of this page reads; an old outcome is left to the versions table."""

    def draw(run: dict, _seen_running: bool) -> None:
        if not runs.outcome_is_news(run):
            return
        if run["status"] == "succeeded":
            st.success(
                f"{title} run {run['id']} finished: {md_escape(run['message'] or 'done')} "
                f"({(run['timings'] or {}).get('total_s', 0):.1f} s)."
            )
        elif run["status"] == "cancelled":
            st.warning(f"{title} run {run['id']} was cancelled; nothing was registered.")
        else:
            st.error(f"{title} run {run['id']} failed: {md_escape(run['error'])}")

    return draw


run_progress(
    user,
    {
        kind: RunView(
            progress=lambda run, title=title: (
                f"{title} run {run['id']} · {run['stage'] or 'starting'} · {run['message'] or ''}"
            ),
            finished=run_finished(title),
            cancel=lambda run, title=title: f"Cancel {title.lower()} run {run['id']}",
        )
        for kind, title in RUN_TITLES.items()
    },
)

# --- versions -----------------------------------------------------------------------------------

st.subheader("Versions")
table = registry.versions_table(storage)
if not table:
    st.info("No probe yet. Label some answers and press Retrain, or upload a probe below.")
else:
    frame = pd.DataFrame(table)
    frame["active"] = frame["active"].map({True: "●", False: ""})
    st.dataframe(
        frame,
        hide_index=True,
        key="probe-versions",
        column_config={
            k: st.column_config.NumberColumn(format="%.3f")
            for k in ("token AUC", "span_max AUC", "recall@10%FPR", "Δ span_max AUC", "Δ CI low", "Δ CI high")
        },
    )
    versions = [row["version"] for row in table]
    active = next((row["version"] for row in table if row["active"]), None)
    target = registry.rollback_target(storage)
    if target is not None and active is not None:
        # about the active version, whatever is picked below: so it sits here, not beside the pick
        note, button = st.columns([3, 1])
        note.caption(f"Active: v{active}. Rolling back makes v{target}, the version active before it, active again.")
        if button.button(f"Roll back to v{target}", key=f"rollback-{target}"):
            activate(target, "Rolled back to v{v}; filling any missing scores (run {run}).")
    version = st.selectbox(
        "Version",
        versions,
        format_func=lambda v: f"v{v}" + (" (active)" if v == active else ""),
        key=f"probe-version-{versions[0]}",
    )  # a new version resets the pick to it
    metrics = section(acts.stored_metrics(storage, version))  # stored metrics may be odd: read tolerantly
    small = version_validation_warning(metrics)
    if small:
        st.warning(f"v{version}: {small}", icon=":material/warning:")
    rows = registry.comparison_rows(metrics)
    comparison = section(metrics, "comparison")
    if rows:
        against, n_answers = whole(comparison.get("against")), whole(comparison.get("n_generations"))
        st.markdown(
            f"**v{version} against v{against if against is not None else '?'}** (active when it was "
            f"trained), paired bootstrap over the same {n_answers if n_answers is not None else '?'} "
            "validation answers; the CI is of the difference"
        )
        st.dataframe(
            pd.DataFrame(rows),
            hide_index=True,
            key="probe-comparison",
            column_config={
                k: st.column_config.NumberColumn(format="%.3f")
                for k in ("active", "new", "delta", "CI low", "CI high", "P(new better)")
            },
        )
    elif comparison.get("skipped"):
        st.caption(f"No comparison: {md_escape(comparison['skipped'])}")
    with st.expander("All metrics (JSON)"):
        st.json({k: v for k, v in metrics.items() if k != "validation_ids"}, expanded=False)

    promote_col, download_col = st.columns(2)
    if version != active and promote_col.button(
        f"Promote v{version} to active", type="primary", key=f"promote-{version}"
    ):
        activate(version, "v{v} is active; re-scoring stored answers (run {run}).")
    try:
        download_col.download_button(
            f"Download v{version}",
            acts.download(storage, version),
            file_name=f"probelens-probe-v{version}.zip",
            mime="application/zip",
            key=f"download-{version}",
        )
    except UserError as exc:
        download_col.error(md_escape(str(exc)))

# --- upload -------------------------------------------------------------------------------------

st.subheader("Upload a probe")
st.caption(
    "A zip holding config.json and probe.safetensors (as downloaded above), or a zip of a probe folder "
    f"written by the paper's code (probe_head.bin and probe_config.json), trained on {model_label()}; it is "
    "checked against the loaded model and registered as a new, inactive version."
)
uploaded = st.file_uploader("Probe zip", type=["zip"], key="probe-upload")
if uploaded is not None and st.button("Register uploaded probe", key="probe-upload-go"):
    try:
        new_version = acts.upload(storage, language_model(), user, uploaded.getvalue())
        st.success(f"Registered as v{new_version}.")
    except UserError as exc:
        st.error(md_escape(str(exc)))
