"""How one probe separates the classes: ROC/PR curves beside the log-prob and entropy
baselines, score histograms, reliability, a threshold table for a slider, and a conformal
threshold with a finite-sample false-positive guarantee.

Conventions: a token/span is *flagged* when ``score >= threshold`` (as in ``binary_metrics``),
except for the conformal threshold, whose guarantee is stated for ``score > threshold``.
Results are dicts, lists, str, int, float and ``None`` (undefined values and infinite
thresholds), so they survive ``json.dumps`` and ``JSON.parse`` alike.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
from sklearn.metrics import auc as sk_auc
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

from core.analysis.score_levels import (
    Level,
    check_level,
    json_floats,
    level_scores,
    map_thresholds,
    require_probe,
    sklearn_safe,
)
from core.base.numbers import finite_or_none
from core.probes.metrics import (
    BASELINES,
    ItemScores,
    ScoreKind,
    auc_score,
    both_classes,
    expected_calibration_error,
    recall_at_fpr,
    reliability_bins,
)

#: Curves longer than this are thinned for drawing (a browser chokes on 10^6 points).
MAX_CURVE_POINTS = 500


# --------------------------------------------------------------------------- curves


def downsample_curve(x: Sequence[float], y: Sequence[float], max_points: int = MAX_CURVE_POINTS) -> np.ndarray:
    """Indices of at most ``max_points`` vertices of the polyline ``(x, y)`` that keep its shape.

    Vertices are picked at equal steps of *path length*, not of index: a ROC curve's
    thresholds are crowded where nothing happens (long flat runs) and sparse where it
    bends, so thinning by index would cut corners exactly where the eye looks. Only real
    vertices are kept (their thresholds stay true), the first and last always. For a
    monotone curve in the unit square the area lost is at most about ``L * max_step / 8``
    (``L`` <= 2 the path length), i.e. well under 0.01 AUC for 500 points.
    """
    xs = np.asarray(x, dtype=np.float64).reshape(-1)
    ys = np.asarray(y, dtype=np.float64).reshape(-1)
    n = xs.size
    if n != ys.size:
        raise ValueError(f"x has {n} values but y has {ys.size}")
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}")
    if n <= max_points:
        return np.arange(n)
    step = np.hypot(np.diff(xs), np.diff(ys))
    cum = np.concatenate([[0.0], np.cumsum(step)])
    if cum[-1] <= 0:
        return np.array([0, n - 1])
    targets = np.linspace(0.0, cum[-1], max_points)
    idx = np.searchsorted(cum, targets, side="left").clip(0, n - 1)
    idx[0], idx[-1] = 0, n - 1
    return np.unique(idx)


def _one_curve_set(y: np.ndarray, s: np.ndarray, max_points: int) -> dict[str, Any] | None:
    if not both_classes(y):
        return None
    s_ok, uniq = sklearn_safe(s)
    # drop_intermediate only removes collinear points, which change neither shape nor area.
    fpr, tpr, roc_t = roc_curve(y, s_ok, pos_label=1, drop_intermediate=True)
    keep = downsample_curve(fpr, tpr, max_points)
    roc_thresholds = map_thresholds(roc_t[keep], uniq)

    precision, recall, pr_t = precision_recall_curve(y, s_ok, pos_label=1, drop_intermediate=True)
    # sklearn's last PR point (recall 0, precision 1) has no threshold: pad with None so all
    # three lists have the same length and index together in a hover label.
    pr_thresholds = map_thresholds(pr_t, uniq) + [None]
    keep_pr = downsample_curve(recall, precision, max_points)
    return {
        "roc": {
            "fpr": json_floats(fpr[keep]),
            "tpr": json_floats(tpr[keep]),
            "thresholds": roc_thresholds,
        },
        "pr": {
            "precision": json_floats(precision[keep_pr]),
            "recall": json_floats(recall[keep_pr]),
            "thresholds": [pr_thresholds[i] for i in keep_pr],
        },
        "auc": finite_or_none(sk_auc(fpr, tpr)),
        "average_precision": finite_or_none(average_precision_score(y, s_ok, pos_label=1)),
    }


def curves(
    items: Sequence[ItemScores], level: Level = "span_max", max_points: int = MAX_CURVE_POINTS
) -> dict[str, Any]:
    """ROC and precision-recall curves of the probe and both baselines on the same items.

    Returns ``{"level", "n", "n_pos", "prevalence", "scores": {name: curve set | None}}``
    with names ``probe`` (None if the items carry no probe scores), ``logprob`` (score
    ``-logprob``) and ``entropy``. A curve set is ``{"roc": {fpr, tpr, thresholds},
    "pr": {precision, recall, thresholds}, "auc", "average_precision"}``, lists aligned
    index by index and thinned to at most ``max_points`` (``auc``/``average_precision``
    are computed on the full curve). A threshold of None is "above every score" (the
    (0, 0) ROC corner, the (recall 0, precision 1) PR end). A curve set is None when
    only one class is present. ``prevalence`` is the PR chart's no-skill line.
    """
    items = list(items)
    check_level(level)
    with_probe = sum(it.probe is not None for it in items)
    if 0 < with_probe < len(items):
        raise ValueError(f"{len(items) - with_probe} of {len(items)} items have no probe scores")
    kinds: dict[str, ScoreKind] = {"probe": "probe", **BASELINES}
    out: dict[str, Any] = {"level": level}
    scores: dict[str, Any] = {}
    y_ref: np.ndarray | None = None
    for name, which in kinds.items():
        if which == "probe" and (with_probe == 0 or not items):
            scores[name] = None
            continue
        y, s = level_scores(items, which, level)
        y_ref = y
        scores[name] = _one_curve_set(y, s, max_points)
    n = int(y_ref.size) if y_ref is not None else 0
    n_pos = int(np.count_nonzero(y_ref)) if y_ref is not None else 0
    out.update(n=n, n_pos=n_pos, prevalence=(n_pos / n) if n else None, scores=scores)
    return out


# --------------------------------------------------------------------------- distributions


def score_histograms(
    items: Sequence[ItemScores], level: Level = "span_max", bins: int = 20, which: ScoreKind = "probe"
) -> dict[str, Any]:
    """Counts per score bin for label 0 and label 1: how much the classes overlap.

    AUC summarises the overlap in one number; the two histograms show whether it comes from
    a long tail of confident mistakes or a broad muddle in the middle, which calls for
    different fixes. Probe scores use ``bins`` equal-width bins on [0, 1]; baseline scores
    (not probabilities) use the range of their finite values, infinite values counted in
    the outer bins. Returns ``{"level", "which", "edges" [bins+1], "centers" [bins],
    "counts": {"0": [...], "1": [...]}, "n": {"0", "1"}}``; the counts of a class sum to
    its ``n``.
    """
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    bins = int(bins)
    y, s = level_scores(list(items), which, level)
    if which == "probe":
        lo, hi = 0.0, 1.0
    else:
        finite = s[np.isfinite(s)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    clipped = np.clip(s, lo, hi)  # np.histogram would silently drop out-of-range values
    counts = {str(c): np.histogram(clipped[y == c], bins=edges)[0] for c in (0, 1)}
    return {
        "level": level,
        "which": which,
        "edges": json_floats(edges),
        "centers": json_floats((edges[:-1] + edges[1:]) / 2.0),
        "counts": {c: [int(v) for v in arr] for c, arr in counts.items()},
        "n": {str(c): int(np.count_nonzero(y == c)) for c in (0, 1)},
    }


def reliability(items: Sequence[ItemScores], level: Level = "span_max", n_bins: int = 10) -> dict[str, Any]:
    """Reliability diagram bins and ECE of the probe's probabilities.

    A well-ranked probe can still be badly calibrated (e.g. trained with the 10x span
    weight it over-predicts); the page needs to show that before anyone reads a score as a
    probability. Same bins and ECE as :mod:`core.probes.metrics` so the numbers agree with the
    metrics JSON. Returns ``{"level", "n", "bins": [{bin_lo, bin_hi, count, mean_prob,
    frac_pos}], "ece"}``.
    """
    items = list(items)
    require_probe(items)
    y, s = level_scores(items, "probe", level)
    return {
        "level": level,
        "n": int(y.size),
        "bins": reliability_bins(y, s, n_bins),
        "ece": expected_calibration_error(y, s, n_bins),
    }


# --------------------------------------------------------------------------- thresholds


def threshold_table(items: Sequence[ItemScores], level: Level = "span_max", n_steps: int = 100) -> dict[str, Any]:
    """Precision, recall, F1 and FPR at every threshold ``i / n_steps`` (0, 0.01, ..., 1).

    Precomputed in one vectorised pass (two sorts, then binary searches) so a threshold
    slider only looks a row up: ``round(t * n_steps)`` is the index of threshold ``t``.
    Flagged means ``score >= threshold`` and undefined values are None, exactly as
    ``binary_metrics`` (precision None when nothing is flagged, recall None with no
    positives, F1 ``2tp / (2tp + fp + fn)`` None only when that denominator is 0).
    Also the threshold-free ``auc``, ``recall_at_fpr_0.01`` and ``recall_at_fpr_0.1``.
    Columns: ``thresholds, precision, recall, f1, fpr, tp, fp, fn, tn`` (lists).
    """
    if int(n_steps) != n_steps or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    n_steps = int(n_steps)
    items = list(items)
    require_probe(items)
    y, s = level_scores(items, "probe", level)
    # i / n_steps (not i * step): 7 / 100 is the double nearest 0.07, as typed by a user.
    grid = np.arange(n_steps + 1) / n_steps
    pos = np.sort(s[y == 1])
    neg = np.sort(s[y == 0])
    tp = pos.size - np.searchsorted(pos, grid, side="left")
    fp = neg.size - np.searchsorted(neg, grid, side="left")
    fn = pos.size - tp
    tn = neg.size - fp

    def ratio(num: np.ndarray, den: np.ndarray) -> list[float | None]:
        return [float(a / b) if b else None for a, b in zip(num.tolist(), den.tolist())]

    return {
        "level": level,
        "n": int(y.size),
        "n_pos": int(pos.size),
        "thresholds": [float(t) for t in grid],
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, np.full_like(tp, pos.size)),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "fpr": ratio(fp, np.full_like(fp, neg.size)),
        "tp": tp.tolist(),
        "fp": fp.tolist(),
        "fn": fn.tolist(),
        "tn": tn.tolist(),
        "auc": auc_score(y, s),
        "recall_at_fpr_0.01": recall_at_fpr(y, s, 0.01),
        "recall_at_fpr_0.1": recall_at_fpr(y, s, 0.1),
    }


# --------------------------------------------------------------------------- conformal


def _conformal_rank(n: int, alpha: float) -> int:
    """``ceil((n + 1)(1 - alpha))`` in exact rational arithmetic.

    In floats ``10 * (1 - 0.1)`` may land a hair above 9 and ceil to 10, a needlessly
    conservative threshold; the decimal the user typed is what the guarantee is about.
    """
    a = Fraction(repr(float(alpha)))
    return math.ceil((n + 1) * (1 - a))


def conformal_threshold(calibration_scores_of_negatives: Any, target_fpr: float) -> dict[str, Any]:
    """Split-conformal threshold whose false-positive rate is guaranteed to be <= ``target_fpr``.

    With ``n`` calibration scores of negatives (gold 0), ``alpha = target_fpr`` and
    ``k = ceil((n + 1)(1 - alpha))``, the threshold is the ``k``-th smallest score. For a
    new negative exchangeable with the calibration negatives its rank among the ``n + 1``
    is uniform, so ``P(score > threshold) <= (n + 1 - k) / (n + 1) <= alpha`` (ties only
    lower it). The rule is strict: flag when ``score > threshold``. If ``k > n`` (fewer
    than ``1/alpha - 1`` negatives) no calibration score is high enough: the threshold is
    +inf, returned as None, and the rule never flags.

    Returns ``{"threshold" (None = +inf), "never_flags", "target_fpr", "rank_k",
    "n_calibration", "fpr_bound" ((n+1-k)/(n+1), exact for untied scores),
    "min_calibration" (negatives needed for a finite threshold), "flag_rule",
    "guarantee_text"}``. The guarantee is marginal — on average over the calibration draw
    and the new item — and says nothing about recall or about any subgroup.
    """
    alpha = float(target_fpr)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"target_fpr must be in (0, 1), got {target_fpr!r}")
    s = np.sort(np.asarray(calibration_scores_of_negatives, dtype=np.float64).reshape(-1))
    if not np.isfinite(s).all():
        raise ValueError("calibration scores must be finite (no NaN or infinity)")
    n = int(s.size)
    k = _conformal_rank(n, alpha)
    # smallest n with ceil((n+1)(1-alpha)) <= n, i.e. (n+1)·alpha >= 1
    min_n = max(0, math.ceil(1 / Fraction(repr(alpha))) - 1)
    out: dict[str, Any] = {
        "target_fpr": alpha,
        "rank_k": k,
        "n_calibration": n,
        "min_calibration": min_n,
        "flag_rule": "score > threshold",
    }
    if k > n:
        out.update(threshold=None, never_flags=True, fpr_bound=0.0)
        out["guarantee_text"] = (
            f"No finite threshold: with {n} calibration negatives a split-conformal threshold at "
            f"FPR {alpha:g} needs the {k}-th smallest score, but there are only {n} "
            f"(at least {min_n} negatives are needed). The threshold is +inf, so nothing is "
            f"flagged (FPR 0, recall 0). Add calibration negatives or raise the target FPR."
        )
        return out
    thr = float(s[k - 1])
    bound = (n + 1 - k) / (n + 1)
    out.update(threshold=thr, never_flags=False, fpr_bound=bound)
    out["guarantee_text"] = (
        f"Flag when score > {thr:.6g} (strictly greater). Split-conformal guarantee: for a new "
        f"negative (gold 0) item exchangeable with the {n} calibration negatives, "
        f"P(score > threshold) <= {bound:.4g} <= target FPR {alpha:g}. The threshold is the "
        f"{k}-th smallest of the {n} calibration scores (k = ceil((n+1)(1-alpha))). The "
        f"guarantee is marginal: it holds on average over the random calibration set and new "
        f"item, not conditionally on this calibration set nor for any subgroup (a topic, a "
        f"model version), and it does not bound recall."
    )
    return out


def empirical_fpr(scores_of_negatives: Any, threshold: float | None) -> float | None:
    """Fraction of negatives flagged by the conformal rule ``score > threshold``.

    The check that a conformal threshold kept its promise on held-out data. ``threshold``
    None (the +inf of :func:`conformal_threshold`) flags nothing. None for no negatives.
    """
    s = np.asarray(scores_of_negatives, dtype=np.float64).reshape(-1)
    if s.size == 0:
        return None
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    if threshold is None:
        return 0.0
    return float(np.count_nonzero(s > float(threshold)) / s.size)


def conformal_from_items(
    items: Sequence[ItemScores],
    level: Level,
    target_fpr: float,
    calibration_keys: Collection[str],
    keys: Sequence[str],
) -> dict[str, Any]:
    """Conformal threshold calibrated on some generations, checked on the others.

    ``keys[i]`` names ``items[i]``; generations whose key is in ``calibration_keys`` are
    the calibration set (whole generations, so the held-out check does not share a
    generation with it), all others are held out. Returns :func:`conformal_threshold`'s
    dict plus ``level``, ``n_calibration_generations``, ``n_held_out_generations``,
    ``unknown_calibration_keys`` (keys matching no item) and ``held_out``:
    ``{n_negatives, n_positives, fpr, recall}`` under ``score > threshold`` (None when
    undefined). The text notes that tokens/spans of one generation are correlated, so the
    exchangeability the guarantee needs is between whole generations and holds only
    approximately per token or span.
    """
    items = list(items)
    keys = [str(k) for k in keys]
    if len(keys) != len(items):
        raise ValueError(f"{len(items)} items but {len(keys)} keys")
    check_level(level)
    require_probe(items)
    cal = {str(k) for k in calibration_keys}
    in_cal = [k in cal for k in keys]
    cal_items = [it for it, c in zip(items, in_cal) if c]
    test_items = [it for it, c in zip(items, in_cal) if not c]
    y_c, s_c = level_scores(cal_items, "probe", level)
    result = conformal_threshold(s_c[y_c == 0], target_fpr)
    y_t, s_t = level_scores(test_items, "probe", level)
    neg, pos = s_t[y_t == 0], s_t[y_t == 1]
    thr = result["threshold"]
    recall = None
    if pos.size:
        recall = 0.0 if thr is None else float(np.count_nonzero(pos > thr) / pos.size)
    result.update(
        level=level,
        n_calibration_generations=len(cal_items),
        n_held_out_generations=len(test_items),
        unknown_calibration_keys=len(cal - set(keys)),
        held_out={
            "n_negatives": int(neg.size),
            "n_positives": int(pos.size),
            "fpr": empirical_fpr(neg, thr),
            "recall": recall,
        },
    )
    unit = {"token": "token", "span": "span token", "span_max": "span"}[level]
    result["guarantee_text"] += (
        f" Here the units are {unit}s; several come from each generation and are correlated, so "
        f"exchangeability (and the guarantee) is exact only between whole generations and "
        f"approximate per {unit}."
    )
    return result
