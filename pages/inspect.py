"""Inspect (reviewer, admin): where a probe works and where it fails, on labelled answers."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.base.errors import UserError
from core.components.heatmap import TokenView, token_heatmap
from core.text.markdown import md_escape
from core.text.readable import label_word
from core.text.spreadsheet import spreadsheet_safe
from pages.common import database, fitted_columns, language_model, require_page
from pages.run_progress import progress_bar

require_page("inspect")
st.title("Inspect")

from core.analysis import charts, comparison, curves, mistakes
from core.orchestration import eval_sets, registry
from core.orchestration.actions import shared

storage = database()
records = shared.probe_records(storage)
dataset_names = shared.dataset_names(storage)
if not records:
    st.info("No probe yet: train one on the Probes page (or wait for the demo seed).")
    st.stop()

versions = [v for v, _a, _l in records]
active = next((v for v, a, _l in records if a), versions[0])
c1, c2, c3, c4 = st.columns([1, 2, 2, 1])
version = c1.selectbox(
    "Probe version",
    versions,
    index=versions.index(active),
    key="insp-version",
    format_func=lambda v: f"v{v}" + (" (active)" if v == active else ""),
)
datasets = c2.multiselect("Datasets", dataset_names, placeholder="all datasets", key="insp-datasets")
splits = c3.multiselect("Splits", ["train", "validation", "test"], default=["validation"], key="insp-splits")
level = c4.radio(
    "Level",
    ["span_max", "token"],
    key="insp-level",
    help="span_max: one score per labelled span (its highest token); token: every answer token",
)


@st.cache_resource(max_entries=6, show_spinner=False)
def scored(version: int, datasets: tuple[str, ...], splits: tuple[str, ...], revision: str):
    """One scoring pass per (version, data, labels revision), shared by every session."""
    return eval_sets.evaluation_set(database(), language_model(), version, datasets or None, splits or None)


@st.cache_resource(max_entries=6, show_spinner=False)
def table_of(version: int, datasets: tuple[str, ...], splits: tuple[str, ...], revision: str, level: str):
    return curves.threshold_table(scored(version, datasets, splits, revision).items, level)


key = (int(version), tuple(datasets), tuple(splits or ()), eval_sets.labels_revision(storage))
try:
    with st.spinner("Scoring the labelled answers with this probe…"):
        es = scored(*key)
except UserError as exc:
    st.info(md_escape(str(exc)))
    st.stop()
st.caption(
    f"v{es.probe_version} (layer {es.layer}) on {len(es.row_ids)} labelled answers "
    f"({', '.join(sorted(set(es.splits)))}); labels: gold, else the annotators' majority."
)

tab_curves, tab_threshold, tab_errors, tab_suspects, tab_layers, tab_compare = st.tabs(
    ["Curves", "Threshold", "Errors", "Label suspects", "Layers", "Compare versions"]
)

# --- curves ----------------------------------------------------------------------------------------
with tab_curves:
    found = curves.curves(es.items, level)
    if found["scores"].get("probe") is None:
        st.info(f"Only one class at the {level} level in these answers: no curves. Add splits or datasets.")
    else:
        left, right = st.columns(2)
        left.plotly_chart(charts.roc_figure(found), key="insp-roc")
        right.plotly_chart(charts.pr_figure(found), key="insp-pr")
        left.plotly_chart(charts.histogram_figure(curves.score_histograms(es.items, level)), key="insp-hist")
        right.plotly_chart(charts.reliability_figure(curves.reliability(es.items, level)), key="insp-rel")

# --- threshold -------------------------------------------------------------------------------------
with tab_threshold:
    table = table_of(*key, level)

    # Not a fragment: the error list (another tab) follows the same threshold, and a rerun
    # of this page is cheap (scoring and the table are cached; the slider only looks up a row).
    t = st.slider(
        "Threshold",
        0.0,
        1.0,
        0.5,
        0.01,
        key="insp-threshold",
        help="flag a span (or token) when its score is at least this; the Errors tab uses it too",
    )
    row = int(round(t * (len(table["thresholds"]) - 1)))

    def shown(value) -> str:
        return "–" if value is None else f"{value:.3f}"

    cols = st.columns(5)
    for col, name in zip(cols, ("precision", "recall", "f1", "fpr")):
        col.metric(name.upper() if name == "fpr" else name.capitalize(), shown(table[name][row]))
    cols[4].metric("Flagged", f"{table['tp'][row] + table['fp'][row]}")
    st.caption(
        f"Threshold-free: AUC {shown(table['auc'])} · recall at 1% FPR "
        f"{shown(table['recall_at_fpr_0.01'])} · recall at 10% FPR {shown(table['recall_at_fpr_0.1'])}"
    )

    st.markdown("**Conformal threshold**")
    present = sorted(set(es.splits))
    a, b = st.columns(2)
    target = a.number_input("Target false-positive rate", 0.001, 0.5, 0.1, 0.01, format="%.3f", key="insp-fpr")
    calibration = b.selectbox(
        "Calibrate on",
        present,
        key="insp-calib",
        help="whole answers of this split calibrate; the others check the guarantee",
    )
    calib_keys = {k for k, s in zip(es.keys, es.splits) if s == calibration}
    try:
        conformal = curves.conformal_from_items(es.items, level, float(target), calib_keys, es.keys)
        thr = conformal.get("threshold")
        st.metric("Threshold", "none possible" if thr is None else f"{thr:.4f}")
        st.write(conformal.get("guarantee_text", ""))
        held = conformal.get("held_out") or {}
        if conformal.get("n_held_out_generations"):
            st.caption(
                f"Check on {conformal['n_held_out_generations']} held-out answers: FPR "
                f"{held.get('fpr') if held.get('fpr') is None else round(held['fpr'], 3)}, recall "
                f"{held.get('recall') if held.get('recall') is None else round(held['recall'], 3)}."
            )
        else:
            st.caption("Pick two splits above to see the guarantee checked on answers it was not calibrated on.")
    except (UserError, ValueError) as exc:
        st.info(md_escape(str(exc)))

# --- errors ----------------------------------------------------------------------------------------
with tab_errors:
    threshold = float(st.session_state.get("insp-threshold", 0.5))
    errors = mistakes.top_errors(es.items, es.keys, es.texts, es.spans_char, threshold=threshold, k=25)
    st.caption(
        f"At threshold {threshold:.2f}: {errors['n_false_positives']} false positives and "
        f"{errors['n_false_negatives']} false negatives among {errors['n_spans']} spans. "
        "Select a row to open the answer."
    )
    picked = None
    for kind, title in (("false_positives", "Flagged but supported"), ("false_negatives", "Missed hallucinations")):
        rows = errors[kind]
        st.markdown(f"**{title}**")
        frame = pd.DataFrame(
            [
                {
                    "answer": int(e["key"]),
                    "score": e["score"],
                    "before": e["before"],
                    "span": e["span_text"],
                    "after": e["after"],
                }
                for e in rows
            ],
            columns=["answer", "score", "before", "span", "after"],
        )
        chosen = st.dataframe(
            spreadsheet_safe(frame),
            hide_index=True,
            on_select="rerun",
            selection_mode="single-row",
            key=f"insp-{kind}",
            column_config=fitted_columns(frame.to_dict("records"), ("score",)),
        )
        if chosen and chosen.selection and chosen.selection.rows:
            picked = rows[chosen.selection.rows[0]]
    if picked is not None:
        g = es.keys.index(picked["key"])
        row_id = es.row_ids[g]
        token = eval_sets.first_token_of(es, g, picked["start"])
        st.markdown(
            f"**Answer #{row_id}** — the span at characters {picked['start']}–{picked['end']} is "
            f"highlighted (score {picked['score']:.3f}); underlines are the labels. Outlines mark "
            "labelled spans only, judged as the list judges them (by their highest token): dashed "
            "blue flagged but supported, dotted red missed, solid caught."
        )
        token_heatmap(
            TokenView.from_trace(es.traces[g]),
            threshold=threshold,
            gold_spans=es.gold_spans[g],
            predicted_spans=mistakes.flagged_spans(es.items[g], es.spans_char[g], threshold),
            focus=token,
            key=f"insp-error-{row_id}",
            doc_id=f"inspect-{row_id}",
            height=320,
        )
        l1, l2 = st.columns(2)
        l1.page_link("pages/annotate.py", label=f"Correct #{row_id} in Annotate", query_params={"generation": row_id})
        l2.page_link("pages/review.py", label=f"Review #{row_id}", query_params={"generation": row_id})

# --- label suspects ----------------------------------------------------------------------------------
with tab_suspects:
    st.caption(
        "Spans whose label a cross-validated probe (5 folds by answer, never trained on that answer) "
        "confidently contradicts: likely labelling mistakes, worth a second look."
    )
    suspects_key = ("suspects", *key)
    if st.button("Find label suspects", key="insp-suspects-go"):
        bar, on_bar = progress_bar("training fold probes…", {"folds": (0.0, 1.0)})
        st.session_state[suspects_key] = eval_sets.suspects(es, progress=on_bar)
        bar.empty()
    found = st.session_state.get(suspects_key)
    if found is not None:
        if not found:
            st.success("No span is confidently contradicted.")
        frame = pd.DataFrame(
            [
                {
                    "answer": s["row_id"],
                    "span": s["span_text"],
                    "gold": label_word(s["label"]),
                    "probe": s["score"],
                    "confidence": s["confidence"],
                    "kind": mistakes.suspect_kind_words(s["kind"]),
                }
                for s in found
            ]
        )
        chosen = st.dataframe(
            spreadsheet_safe(frame),
            hide_index=True,
            on_select="rerun",
            selection_mode="single-row",
            key="insp-suspects",
            column_config=fitted_columns(frame.to_dict("records"), ("probe", "confidence")),
        )
        if chosen and chosen.selection and chosen.selection.rows:
            s = found[chosen.selection.rows[0]]
            st.page_link(
                "pages/review.py",
                label=f"Review answer #{s['row_id']} ({md_escape(repr(s['span_text']))})",
                query_params={"generation": s["row_id"]},
            )


# --- layers ----------------------------------------------------------------------------------------


with tab_layers:
    st.caption(
        "A quick probe per layer, trained on the train split and measured on the chosen splits; "
        "runs the model once over every layer (cached afterwards)."
    )
    own_model = registry.reads_own_model(database(), es.probe_version)
    if own_model is not None:
        st.info(
            "The layer sweep is a linear-probe tool: it trains quick linear probes on the base model's "
            f"hidden states. v{es.probe_version} is a {own_model}, so its own numbers are on the other tabs."
        )
    scan_key = ("layers", tuple(datasets), tuple(splits or ()), eval_sets.labels_revision(storage))
    if st.button("Run layer sweep", key="insp-layers-go"):
        bar, on_bar = progress_bar("extracting hidden states…", eval_sets.LAYER_SCAN_SHARES)
        try:
            st.session_state[scan_key] = eval_sets.layer_scan(
                storage,
                language_model(),
                datasets or None,
                [s for s in (splits or ["validation"]) if s != "train"] or ["validation"],
                progress=on_bar,
            )
        except UserError as exc:
            st.info(md_escape(str(exc)))
        bar.empty()
    scan = st.session_state.get(scan_key)
    if scan is not None:
        st.plotly_chart(charts.layer_figure(scan.rows, es.layer), key="insp-layer-fig")
        st.caption(
            f"Best layer here: {scan.best_layer} (this probe reads layer {es.layer}). Overlapping CIs "
            "mean the difference is within the noise of this many answers."
        )
        which = st.selectbox(
            "Answer for the layer × token scan",
            es.row_ids,
            key="insp-scan-answer",
            format_func=lambda r: f"#{r}: {es.texts[es.row_ids.index(r)][:80]}",
        )
        st.plotly_chart(
            charts.token_scan_figure(eval_sets.token_scan(language_model(), es, es.row_ids.index(which), scan)),
            key="insp-scan-fig",
        )

# --- compare ---------------------------------------------------------------------------------------
with tab_compare:
    others = [v for v in versions if v != version]
    if not others:
        st.info("Only one version exists; retrain on the Probes page to compare.")
    else:
        other = st.selectbox("Compare with", others, key="insp-other", format_func=lambda v: f"v{v}")
        compare_key = ("compare", other, *key)
        if compare_key not in st.session_state:
            try:  # the other version's files may be gone, damaged or for another model: one message
                with st.spinner(f"Scoring the same answers with v{other}…"):
                    es_b = eval_sets.rescored(es, storage, language_model(), int(other))
                    st.session_state[compare_key] = (es_b, comparison.compare_probes(es.items, es_b.items, n_boot=500))
            except UserError as exc:
                st.info(md_escape(f"v{other} cannot be compared: {exc}"))
        if compare_key in st.session_state:
            es_b, delta = st.session_state[compare_key]
            rows = []
            for lv in ("token", "span_max"):
                for metric in ("auc", "recall_at_fpr_0.1"):
                    r = delta[lv][metric]
                    rows.append(
                        {
                            "level": lv,
                            "metric": metric,
                            f"v{version}": r["a"],
                            f"v{other}": r["b"],
                            f"Δ (v{other} − v{version})": r["delta"],
                            "CI low": r["ci"][0],
                            "CI high": r["ci"][1],
                            f"P(v{other} better)": r["prob_b_better"],
                        }
                    )
            st.dataframe(
                pd.DataFrame(rows),
                hide_index=True,
                key="insp-compare-table",
                column_config=fitted_columns(rows, tuple(k for k in rows[0] if k not in ("level", "metric"))),
            )
            which = st.selectbox(
                "Answer",
                es.row_ids,
                key="insp-compare-answer",
                format_func=lambda r: f"#{r}: {es.texts[es.row_ids.index(r)][:80]}",
            )
            g = es.row_ids.index(which)
            left, right = st.columns(2)
            left.markdown(f"**v{version}**")
            with left:
                token_heatmap(
                    TokenView.from_trace(es.traces[g]), gold_spans=es.gold_spans[g], key=f"insp-a-{which}", height=260
                )
            right.markdown(f"**v{other}**")
            with right:
                token_heatmap(
                    TokenView.from_trace(es_b.traces[g]),
                    gold_spans=es_b.gold_spans[g],
                    key=f"insp-b-{which}",
                    height=260,
                )
