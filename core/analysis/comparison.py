"""Is the new probe really better, and which layer reads best? A paired bootstrap of two
probes on the same answers (overlapping CIs do not tell whether the *difference* is real),
layer AUCs with CIs, and a layer x token matrix of one answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from core.analysis.score_levels import json_floats, level_scores, require_probe
from core.base.progress import CancelToken, ProgressFn, check, report
from core.probes.linear import LinearProbe
from core.probes.metrics import (
    ItemScores,
    auc_score,
    bootstrap_ci,
    level_arrays,
    level_metric,
)

# --------------------------------------------------------------------------- two probes


class WeightedRoc:
    """ROC of fixed scores under changing per-generation weights: sort once, cumsum per call.

    Equal to scikit-learn's ``roc_curve(y, s, sample_weight=w, drop_intermediate=False)``
    (thresholds at every distinct score, plus the (0, 0) corner), which for integer weights
    is the ROC of the concatenated drawn copies. A paired bootstrap calls it thousands of
    times on the same scores; re-sorting each time (what roc_curve does) made a retrain's
    comparison take seconds, this takes milliseconds. Tested against scikit-learn.
    """

    def __init__(self, y: np.ndarray, s: np.ndarray, owner: np.ndarray) -> None:
        order = np.argsort(-np.asarray(s, dtype=np.float64), kind="mergesort")
        ordered = np.asarray(s, dtype=np.float64)[order]
        self.y = np.asarray(y, dtype=np.float64)[order]
        self.owner = np.asarray(owner)[order]
        # the last element of every run of equal scores is a threshold (inf == inf counts as equal)
        self.ends = (
            np.concatenate((np.nonzero(ordered[1:] != ordered[:-1])[0], [ordered.size - 1])) if ordered.size else None
        )

    def auc_and_recall(self, weights: np.ndarray, max_fpr: float = 0.1) -> tuple[float | None, float | None]:
        if self.ends is None:
            return None, None
        w = weights[self.owner]
        tp = np.cumsum(w * self.y)[self.ends]
        fp = np.cumsum(w * (1.0 - self.y))[self.ends]
        if tp[-1] <= 0 or fp[-1] <= 0:
            return None, None
        tpr = np.concatenate(([0.0], tp / tp[-1]))
        fpr = np.concatenate(([0.0], fp / fp[-1]))
        # the trapezoid rule sklearn.metrics.auc applies, without its per-call input checks
        area = float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1])) / 2.0)
        return area, float(tpr[fpr <= max_fpr].max())


_COMPARE_LEVELS: tuple[str, ...] = ("token", "span_max")
_COMPARE_METRICS: tuple[str, ...] = ("auc", "recall_at_fpr_0.1")


def compare_probes(
    items_a: Sequence[ItemScores],
    items_b: Sequence[ItemScores],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """Paired bootstrap of probe B minus probe A on the same generations.

    Two probes scored on the same answers make correlated errors; CIs computed separately
    overlap even when B beats A on almost every resample. Resampling generations once and
    scoring *both* probes on the same resample keeps that pairing, so the CI is of the
    difference itself. ``items_a[i]`` and ``items_b[i]`` must be the same generation (same
    labels, span ids and span labels), only the probe scores differ.

    Returns ``{"n_generations", "n_boot", "seed", "ci_level", "token": {...},
    "span_max": {...}}``, each level ``{"auc": row, "recall_at_fpr_0.1": row}`` with row
    ``{"a", "b", "delta" (b - a), "ci": [lo, hi] (percentile, of the delta),
    "prob_b_better" (share of resamples with delta > 0), "n_valid"}``. Resamples where a
    metric is undefined (one class) are skipped; all None if none is defined.
    """
    items_a, items_b = list(items_a), list(items_b)
    if len(items_a) != len(items_b):
        raise ValueError(f"probe A has {len(items_a)} items but probe B has {len(items_b)}")
    require_probe(items_a)
    require_probe(items_b)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    for i, (a, b) in enumerate(zip(items_a, items_b)):
        same = (
            np.array_equal(a.labels, b.labels)
            and np.array_equal(a.span_ids, b.span_ids)
            and np.array_equal(a.span_labels, b.span_labels)
        )
        if not same:
            raise ValueError(f"item {i}: probes A and B must be scored on the same generation (labels differ)")

    # Per level, every generation's (labels, score A, score B) concatenated once, with the
    # generation each element belongs to. A resample is then a weight per generation (how
    # often it was drawn): the same ROC as concatenating the drawn copies, without sorting
    # again (scores are sorted once per probe and level; see WeightedRoc).
    rocs: dict[str, tuple[WeightedRoc, WeightedRoc]] = {}
    for lv in _COMPARE_LEVELS:
        ys, sas, sbs, owners = [], [], [], []
        for i, (a, b) in enumerate(zip(items_a, items_b)):
            la, lb = level_arrays([a], "probe"), level_arrays([b], "probe")
            ys.append(la[lv][0])
            sas.append(la[lv][1])
            sbs.append(lb[lv][1])
            owners.append(np.full(la[lv][0].size, i, dtype=np.int64))
        y = np.concatenate(ys) if ys else np.zeros(0, np.int8)
        owner = np.concatenate(owners) if owners else np.zeros(0, np.int64)
        rocs[lv] = (
            WeightedRoc(y, np.concatenate(sas) if sas else np.zeros(0), owner),
            WeightedRoc(y, np.concatenate(sbs) if sbs else np.zeros(0), owner),
        )

    def values(counts: np.ndarray, lv: str) -> dict[str, tuple[float | None, float | None]]:
        auc_a, r_a = rocs[lv][0].auc_and_recall(counts)
        auc_b, r_b = rocs[lv][1].auc_and_recall(counts)
        return {"auc": (auc_a, auc_b), "recall_at_fpr_0.1": (r_a, r_b)}

    n = len(items_a)
    point = {lv: values(np.ones(n), lv) for lv in _COMPARE_LEVELS}
    deltas: dict[tuple[str, str], list[float]] = {(lv, m): [] for lv in _COMPARE_LEVELS for m in _COMPARE_METRICS}
    rng = np.random.default_rng(seed)
    step = max(1, n_boot // 100)
    for draw in range(n_boot if n else 0):
        check(cancel)
        idx = rng.integers(0, n, size=n)  # one resample, shared by both probes
        counts = np.bincount(idx, minlength=n).astype(np.float64)
        for lv in _COMPARE_LEVELS:
            for m, (va, vb) in values(counts, lv).items():
                if va is not None and vb is not None:
                    deltas[(lv, m)].append(vb - va)
        if (draw + 1) % step == 0 or draw + 1 == n_boot:
            report(progress, "bootstrap", draw + 1, n_boot)

    out: dict[str, Any] = {"n_generations": n, "n_boot": int(n_boot), "seed": int(seed), "ci_level": 1.0 - alpha}
    for lv in _COMPARE_LEVELS:
        rows: dict[str, Any] = {}
        for m in _COMPARE_METRICS:
            va, vb = point[lv][m]
            d = np.asarray(deltas[(lv, m)])
            if d.size:
                lo, hi = np.quantile(d, [alpha / 2.0, 1.0 - alpha / 2.0])
                ci: list[float | None] = [float(lo), float(hi)]
                better: float | None = float(np.mean(d > 0))
            else:
                ci, better = [None, None], None
            rows[m] = {
                "a": va,
                "b": vb,
                "delta": (vb - va) if va is not None and vb is not None else None,
                "ci": ci,
                "prob_b_better": better,
                "n_valid": int(d.size),
            }
        out[lv] = rows
    return out


# --------------------------------------------------------------------------- layers


def layer_auc_ci(
    items_per_layer: Mapping[int, Sequence[ItemScores]],
    n_boot: int = 300,
    seed: int = 0,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> list[dict[str, Any]]:
    """Token and span_max AUC per layer with 95% bootstrap CIs (resampling generations).

    Neighbouring layers often differ by less than the noise of a small evaluation set;
    the CIs show whether "best layer" means anything. The same seed is used for every
    layer, so with the same generations every layer sees the same resamples and the bars
    are comparable. Returns one row per layer, sorted: ``{"layer", "token_auc",
    "token_ci": [lo, hi], "span_max_auc", "span_max_ci": [lo, hi]}`` (None if undefined).
    """
    rows = []
    layers = sorted(items_per_layer)
    for n, layer in enumerate(layers):
        check(cancel)
        report(progress, "intervals", n, len(layers), f"layer {layer}")
        items = list(items_per_layer[layer])
        require_probe(items)
        row: dict[str, Any] = {"layer": int(layer)}
        for lv in ("token", "span_max"):
            y, s = level_scores(items, "probe", lv)
            row[f"{lv}_auc"] = auc_score(y, s)
            lo, hi = bootstrap_ci(items, level_metric(lv, "auc"), n_boot=n_boot, seed=seed, cancel=cancel)
            row[f"{lv}_ci"] = [lo, hi]
        rows.append(row)
    report(progress, "intervals", len(layers), len(layers), "done")
    return rows


def layer_token_matrix(
    hidden_by_layer: Mapping[int, Any], probes_by_layer: Mapping[int, LinearProbe]
) -> dict[str, Any]:
    """Probe probability of every token of one answer at every layer: a heatmap's data.

    Shows where in depth a hallucination becomes linearly readable and whether a probe
    fires on the entity or only on the tokens after it. Layers are those with both hidden
    states ([T, H], numpy or torch) and a probe, ascending. Returns ``{"layers": [...],
    "matrix": [[p per token] per layer], "n_tokens", "missing_hidden": [...],
    "missing_probe": [...]}``.
    """
    layers = sorted(set(hidden_by_layer) & set(probes_by_layer))
    if not layers:
        raise ValueError("no layer has both hidden states and a probe")
    matrix: list[list[float | None]] = []
    n_tokens: int | None = None
    for layer in layers:
        p = probes_by_layer[layer].predict(hidden_by_layer[layer])
        if isinstance(p, torch.Tensor):
            p = p.detach().cpu().numpy()
        row = np.asarray(p, dtype=np.float64).reshape(-1)
        if n_tokens is None:
            n_tokens = int(row.size)
        elif row.size != n_tokens:
            raise ValueError(f"layer {layer} has {row.size} tokens but earlier layers have {n_tokens}")
        matrix.append(json_floats(row))
    return {
        "layers": [int(x) for x in layers],
        "matrix": matrix,
        "n_tokens": int(n_tokens or 0),
        "missing_hidden": sorted(int(x) for x in set(probes_by_layer) - set(hidden_by_layer)),
        "missing_probe": sorted(int(x) for x in set(hidden_by_layer) - set(probes_by_layer)),
    }
