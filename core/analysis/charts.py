"""Plotly figures of core.analysis's results (no Streamlit): built here so they are tested here."""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go

NAMES = {"probe": "probe", "logprob": "−log-prob baseline", "entropy": "entropy baseline"}
COLOURS = {"probe": "#c0392b", "logprob": "#2c7fb8", "entropy": "#7f8c8d"}


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        height=360,
        margin=dict(l=50, r=10, t=50, b=45),
        legend=dict(orientation="h", y=-0.25),
    )
    return fig


def roc_figure(curves: dict[str, Any]) -> go.Figure:
    fig = go.Figure()
    for name, c in curves["scores"].items():
        if c is None:
            continue
        auc = c.get("auc")
        fig.add_trace(
            go.Scatter(
                x=c["roc"]["fpr"],
                y=c["roc"]["tpr"],
                mode="lines",
                name=f"{NAMES[name]}" + (f" (AUC {auc:.3f})" if auc is not None else ""),
                line=dict(color=COLOURS[name], width=3 if name == "probe" else 1.5),
            )
        )
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line=dict(dash="dot", color="#bbb")))
    return _layout(fig, f"ROC · {curves['level']}", "false-positive rate", "recall (true-positive rate)")


def pr_figure(curves: dict[str, Any]) -> go.Figure:
    fig = go.Figure()
    for name, c in curves["scores"].items():
        if c is None:
            continue
        ap = c.get("average_precision")
        fig.add_trace(
            go.Scatter(
                x=c["pr"]["recall"],
                y=c["pr"]["precision"],
                mode="lines",
                name=f"{NAMES[name]}" + (f" (AP {ap:.3f})" if ap is not None else ""),
                line=dict(color=COLOURS[name], width=3 if name == "probe" else 1.5),
            )
        )
    if curves.get("prevalence") is not None:
        fig.add_trace(
            go.Scatter(
                x=[0, 1],
                y=[curves["prevalence"]] * 2,
                mode="lines",
                name="no skill",
                line=dict(dash="dot", color="#bbb"),
            )
        )
    return _layout(fig, f"Precision–recall · {curves['level']}", "recall", "precision")


def histogram_figure(hist: dict[str, Any]) -> go.Figure:
    fig = go.Figure()
    for cls, colour, label in (("0", "#27ae60", "supported / background (0)"), ("1", "#c0392b", "hallucinated (1)")):
        fig.add_trace(
            go.Bar(
                x=hist["centers"],
                y=hist["counts"][cls],
                name=f"{label}, n={hist['n'][cls]}",
                marker_color=colour,
                opacity=0.6,
            )
        )
    fig.update_layout(barmode="overlay")
    return _layout(fig, f"Score histogram by class · {hist['level']}", "probe score", "count")


def reliability_figure(rel: dict[str, Any]) -> go.Figure:
    bins = [b for b in rel["bins"] if b["count"]]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=[b["mean_prob"] for b in bins],
            y=[b["frac_pos"] for b in bins],
            width=[(b["bin_hi"] - b["bin_lo"]) * 0.9 for b in bins],
            name="observed share hallucinated",
            marker_color="#c0392b",
            opacity=0.6,
            customdata=[b["count"] for b in bins],
            hovertemplate="mean score %{x:.2f}<br>share positive %{y:.2f}<br>n=%{customdata}",
        )
    )
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line=dict(dash="dot", color="#888"))
    )
    ece = rel.get("ece")
    return _layout(
        fig,
        f"Reliability · {rel['level']}" + (f" · ECE {ece:.3f}" if ece is not None else ""),
        "mean predicted probability",
        "observed frequency",
    )


def layer_figure(rows: list[dict[str, Any]], current: int | None = None) -> go.Figure:
    fig = go.Figure()
    for key, colour, label in (("span_max", "#c0392b", "span_max AUC"), ("token", "#2c7fb8", "token AUC")):
        xs = [r["layer"] for r in rows if r.get(f"{key}_auc") is not None]
        ys = [r[f"{key}_auc"] for r in rows if r.get(f"{key}_auc") is not None]
        lo = [
            r[f"{key}_auc"] - r[f"{key}_ci"][0] if r[f"{key}_ci"][0] is not None else 0
            for r in rows
            if r.get(f"{key}_auc") is not None
        ]
        hi = [
            r[f"{key}_ci"][1] - r[f"{key}_auc"] if r[f"{key}_ci"][1] is not None else 0
            for r in rows
            if r.get(f"{key}_auc") is not None
        ]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines+markers",
                name=label,
                line=dict(color=colour),
                error_y=dict(type="data", symmetric=False, array=hi, arrayminus=lo),
            )
        )
    if current is not None:
        fig.add_vline(x=current, line_dash="dot", annotation_text=f"probe layer {current}")
    return _layout(fig, "AUC per layer (95% bootstrap CI over answers)", "layer", "AUC")


def token_scan_figure(scan: dict[str, Any]) -> go.Figure:
    # Token text is model output: Plotly reads a few HTML tags in labels, so escape it.
    labels = [f"{i}:{html.escape(t)}" for i, t in enumerate(scan["tokens"])]
    fig = go.Figure(
        go.Heatmap(
            z=scan["matrix"],
            x=labels,
            y=[str(x) for x in scan["layers"]],
            zmin=0,
            zmax=1,
            colorscale="YlOrRd",
            colorbar=dict(title="p"),
        )
    )
    fig.update_xaxes(showticklabels=len(labels) <= 80)
    return _layout(fig, "Probe score per layer × token", "token", "layer")
