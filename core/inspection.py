"""The computations behind the "Inspect" page: visual debugging of one probe (or two).

A single AUC says a probe is good or bad; it does not say *where* it fails, whether its
probabilities can be read as probabilities, which threshold to deploy, whether a new probe
is really better than the old one, or whether the labels themselves are to blame. Each
function here answers one of those questions with plain data that a Plotly page draws
directly:

- :func:`curves`: ROC and precision-recall curves of the probe next to the two uncertainty
  baselines (``-logprob``, entropy) on the very same items, so the page shows what the
  probe adds over "the model was unsure";
- :func:`score_histograms` / :func:`reliability`: how the two classes' scores overlap and
  whether a 0.7 means 70%;
- :func:`threshold_table`: every metric on a 0.01 threshold grid, precomputed so a slider
  moves without recomputation;
- :func:`conformal_threshold` / :func:`conformal_from_items` / :func:`empirical_fpr`: a
  threshold with a finite-sample false-positive guarantee instead of a hand-picked one;
- :func:`compare_probes`: a paired bootstrap of the difference between two probes, since
  two overlapping CIs do not tell whether the *difference* is real;
- :func:`layer_auc_ci` / :func:`layer_token_matrix`: which layer, with uncertainty, and
  how each layer reads one answer token by token;
- :func:`top_errors` / :func:`label_error_suspects`: the spans to look at by hand, the
  probe's worst mistakes and the gold labels an out-of-fold probe confidently contradicts.

Conventions shared with :mod:`core.metrics`: levels are ``token``, ``span`` and
``span_max`` (the headline, one score per entity span); a token/span is *flagged* when
``score >= threshold`` (as in ``binary_metrics``) — except for the conformal threshold,
whose guarantee is stated for the strict rule ``score > threshold``. Every result is made
of dicts, lists, str, int, float and ``None``; ``None`` stands for an undefined value
(a single class, nothing flagged, ...) and for thresholds that are infinite, so results
survive ``json.dumps`` and ``JSON.parse`` alike (neither NaN nor Infinity appear).
"""
from __future__ import annotations

import hashlib
import math
import struct
from fractions import Fraction
from typing import Any, Collection, Literal, Mapping, Sequence

import numpy as np
import torch
from sklearn.metrics import auc as sk_auc
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

from core.errors import UserError
from core.metrics import (
    BASELINES,
    LEVELS,
    ItemScores,
    ScoreKind,
    auc_score,
    bootstrap_ci,
    expected_calibration_error,
    level_arrays,
    level_metric,
    recall_at_fpr,
    reliability_bins,
)
from core.probe import LinearProbe, TrainConfig, build_training_set, train_probe
from core.progress import CancelToken, ProgressFn, check, report

Level = Literal["token", "span", "span_max"]

#: Curves longer than this are thinned for drawing (a browser chokes on 10^6 points).
MAX_CURVE_POINTS = 500
#: Characters of context either side of a span in the error browser.
CONTEXT_CHARS = 60
#: The quick training used for cross-validated label checks (same as the layer sweep's).
QUICK_TRAIN = TrainConfig(min_steps=100, max_auto_epochs=20)

__all__ = [
    "CONTEXT_CHARS",
    "MAX_CURVE_POINTS",
    "QUICK_TRAIN",
    "compare_probes",
    "conformal_from_items",
    "conformal_threshold",
    "curves",
    "downsample_curve",
    "empirical_fpr",
    "label_error_suspects",
    "layer_auc_ci",
    "layer_token_matrix",
    "reliability",
    "score_histograms",
    "span_max_scores",
    "threshold_table",
    "top_errors",
]


# --------------------------------------------------------------------------- helpers


def _f(x: Any) -> float | None:
    """A JSON-safe float: NaN and +-inf become None (JSON has neither)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _floats(a: Any) -> list[float | None]:
    return [_f(v) for v in np.asarray(a, dtype=np.float64).reshape(-1)]


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; expected one of {', '.join(LEVELS)}")


def _arrays(items: Sequence[ItemScores], which: ScoreKind, level: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) of one level, via the same code path as the metrics JSON."""
    _check_level(level)
    y, s = level_arrays(list(items), which)[level]
    if np.isnan(s).any():
        raise ValueError(f"{which} scores contain NaN")
    return y, s


def _require_probe(items: Sequence[ItemScores]) -> None:
    missing = sum(it.probe is None for it in items)
    if missing:
        raise ValueError(f"{missing} of {len(items)} items have no probe scores")


def _both_classes(y: np.ndarray) -> bool:
    n_pos = int(np.count_nonzero(y))
    return 0 < n_pos < y.size


def _sklearn_safe(s: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Scores scikit-learn accepts, plus how to map its thresholds back.

    ``-logprob`` is +inf for a token the model gave probability 0, and scikit-learn rejects
    infinities. Dense ranks keep the order (so the curves are unchanged) and every sklearn
    threshold is then a rank, i.e. an index into the returned unique values.
    """
    if np.isfinite(s).all():
        return s, None
    uniq, inverse = np.unique(s, return_inverse=True)
    return inverse.astype(np.float64), uniq


def _map_thresholds(t: np.ndarray, uniq: np.ndarray | None) -> list[float | None]:
    if uniq is None:
        return _floats(t)
    return [_f(uniq[int(v)]) if math.isfinite(v) else None for v in t]


def span_max_scores(item: ItemScores) -> np.ndarray:
    """Per span of one item, the max probe score over its tokens (NaN: span has no token).

    The per-item counterpart of the ``span_max`` level, for pages that need to know which
    span of which generation a score belongs to (``level_arrays`` flattens that away).
    """
    if item.probe is None:
        raise ValueError("the item has no probe scores")
    n_spans = int(item.span_labels.size)
    best = np.full(n_spans, -np.inf)
    inside = item.span_ids >= 0
    np.maximum.at(best, item.span_ids[inside].astype(np.int64), item.probe[inside])
    has_tokens = np.bincount(item.span_ids[inside].astype(np.int64), minlength=n_spans) > 0
    return np.where(has_tokens, best, np.nan)


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
    if not _both_classes(y):
        return None
    s_ok, uniq = _sklearn_safe(s)
    # drop_intermediate only removes collinear points, which change neither shape nor area.
    fpr, tpr, roc_t = roc_curve(y, s_ok, pos_label=1, drop_intermediate=True)
    keep = downsample_curve(fpr, tpr, max_points)
    roc_thresholds = _map_thresholds(roc_t[keep], uniq)

    precision, recall, pr_t = precision_recall_curve(y, s_ok, pos_label=1, drop_intermediate=True)
    # sklearn's last PR point (recall 0, precision 1) has no threshold: pad with None so all
    # three lists have the same length and index together in a hover label.
    pr_thresholds = _map_thresholds(pr_t, uniq) + [None]
    keep_pr = downsample_curve(recall, precision, max_points)
    return {
        "roc": {
            "fpr": _floats(fpr[keep]),
            "tpr": _floats(tpr[keep]),
            "thresholds": roc_thresholds,
        },
        "pr": {
            "precision": _floats(precision[keep_pr]),
            "recall": _floats(recall[keep_pr]),
            "thresholds": [pr_thresholds[i] for i in keep_pr],
        },
        "auc": _f(sk_auc(fpr, tpr)),
        "average_precision": _f(average_precision_score(y, s_ok, pos_label=1)),
    }


def curves(items: Sequence[ItemScores], level: Level = "span_max", max_points: int = MAX_CURVE_POINTS) -> dict[str, Any]:
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
    _check_level(level)
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
        y, s = _arrays(items, which, level)
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
    y, s = _arrays(list(items), which, level)
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
        "edges": _floats(edges),
        "centers": _floats((edges[:-1] + edges[1:]) / 2.0),
        "counts": {c: [int(v) for v in arr] for c, arr in counts.items()},
        "n": {str(c): int(np.count_nonzero(y == c)) for c in (0, 1)},
    }


def reliability(items: Sequence[ItemScores], level: Level = "span_max", n_bins: int = 10) -> dict[str, Any]:
    """Reliability diagram bins and ECE of the probe's probabilities.

    A well-ranked probe can still be badly calibrated (e.g. trained with the 10x span
    weight it over-predicts); the page needs to show that before anyone reads a score as a
    probability. Same bins and ECE as :mod:`core.metrics` so the numbers agree with the
    metrics JSON. Returns ``{"level", "n", "bins": [{bin_lo, bin_hi, count, mean_prob,
    frac_pos}], "ece"}``.
    """
    items = list(items)
    _require_probe(items)
    y, s = _arrays(items, "probe", level)
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
    _require_probe(items)
    y, s = _arrays(items, "probe", level)
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
    _check_level(level)
    _require_probe(items)
    cal = {str(k) for k in calibration_keys}
    in_cal = [k in cal for k in keys]
    cal_items = [it for it, c in zip(items, in_cal) if c]
    test_items = [it for it, c in zip(items, in_cal) if not c]
    y_c, s_c = _arrays(cal_items, "probe", level)
    result = conformal_threshold(s_c[y_c == 0], target_fpr)
    y_t, s_t = _arrays(test_items, "probe", level)
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


# --------------------------------------------------------------------------- two probes


def _auc_and_recall(y: np.ndarray, s: np.ndarray, max_fpr: float = 0.1) -> tuple[float | None, float | None]:
    """AUC and recall@FPR from one ROC computation (same definitions as core.metrics)."""
    if not _both_classes(y):
        return None, None
    s_ok, _ = _sklearn_safe(s)
    fpr, tpr, _ = roc_curve(y, s_ok, pos_label=1, drop_intermediate=False)
    return float(sk_auc(fpr, tpr)), float(tpr[fpr <= max_fpr].max())


class _WeightedRoc:
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
        self.ends = (np.concatenate((np.nonzero(ordered[1:] != ordered[:-1])[0], [ordered.size - 1]))
                     if ordered.size else None)

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
    _require_probe(items_a)
    _require_probe(items_b)
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
    # again (scores are sorted once per probe and level; see _WeightedRoc).
    rocs: dict[str, tuple[_WeightedRoc, _WeightedRoc]] = {}
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
        rocs[lv] = (_WeightedRoc(y, np.concatenate(sas) if sas else np.zeros(0), owner),
                    _WeightedRoc(y, np.concatenate(sbs) if sbs else np.zeros(0), owner))

    def values(counts: np.ndarray, lv: str) -> dict[str, tuple[float | None, float | None]]:
        auc_a, r_a = rocs[lv][0].auc_and_recall(counts)
        auc_b, r_b = rocs[lv][1].auc_and_recall(counts)
        return {"auc": (auc_a, auc_b), "recall_at_fpr_0.1": (r_a, r_b)}

    n = len(items_a)
    point = {lv: values(np.ones(n), lv) for lv in _COMPARE_LEVELS}
    deltas: dict[tuple[str, str], list[float]] = {(lv, m): [] for lv in _COMPARE_LEVELS for m in _COMPARE_METRICS}
    rng = np.random.default_rng(seed)
    step = max(1, n_boot // 100)
    for b in range(n_boot if n else 0):
        check(cancel)
        idx = rng.integers(0, n, size=n)  # one resample, shared by both probes
        counts = np.bincount(idx, minlength=n).astype(np.float64)
        for lv in _COMPARE_LEVELS:
            for m, (va, vb) in values(counts, lv).items():
                if va is not None and vb is not None:
                    deltas[(lv, m)].append(vb - va)
        if (b + 1) % step == 0 or b + 1 == n_boot:
            report(progress, "bootstrap", b + 1, n_boot)

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
        report(progress, "layers", n, len(layers), f"layer {layer}")
        items = list(items_per_layer[layer])
        _require_probe(items)
        row: dict[str, Any] = {"layer": int(layer)}
        for lv in ("token", "span_max"):
            y, s = _arrays(items, "probe", lv)
            row[f"{lv}_auc"] = auc_score(y, s)
            lo, hi = bootstrap_ci(items, level_metric(lv, "auc"), n_boot=n_boot, seed=seed, cancel=cancel)
            row[f"{lv}_ci"] = [lo, hi]
        rows.append(row)
    report(progress, "layers", len(layers), len(layers), "done")
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
        matrix.append(_floats(row))
    return {
        "layers": [int(x) for x in layers],
        "matrix": matrix,
        "n_tokens": int(n_tokens or 0),
        "missing_hidden": sorted(int(x) for x in set(probes_by_layer) - set(hidden_by_layer)),
        "missing_probe": sorted(int(x) for x in set(hidden_by_layer) - set(probes_by_layer)),
    }


# --------------------------------------------------------------------------- error browser


def _snippet(text: str, start: int, end: int, width: int) -> dict[str, str]:
    lo, hi = max(0, start - width), min(len(text), end + width)
    before, span, after = text[lo:start], text[start:end], text[end:hi]
    return {"context": before + span + after, "before": before, "span_text": span, "after": after}


def top_errors(
    items: Sequence[ItemScores],
    keys: Sequence[str],
    texts: Sequence[str],
    spans_char: Sequence[Sequence[tuple[int, int]]],
    threshold: float = 0.5,
    k: int = 20,
    context_chars: int = CONTEXT_CHARS,
) -> dict[str, Any]:
    """The probe's worst span-level mistakes, with text to read them in.

    False positives are gold-0 spans flagged (``span_max >= threshold``), highest score
    first; false negatives are gold-1 spans not flagged, lowest score first. Reading the
    top few usually tells a labelling problem from a probe problem faster than any metric.
    ``spans_char[i][j]`` is the (start, end) character range in ``texts[i]`` (the
    completion) of span ``j`` of ``items[i]``, in the order of its ``span_labels``; spans
    with no token are not scored and skipped. Each error: ``{"key", "generation" (index),
    "span" (index), "start", "end", "score", "label", "context", "before", "span_text",
    "after"}`` (plain text, ``context_chars`` either side). Also the totals before the
    top-``k`` cut.
    """
    items = list(items)
    n = len(items)
    if not (len(keys) == len(texts) == len(spans_char) == n):
        raise ValueError(
            f"{n} items but {len(keys)} keys, {len(texts)} texts and {len(spans_char)} span lists"
        )
    _require_probe(items)
    thr = float(threshold)
    fps: list[tuple[float, int, int]] = []
    fns: list[tuple[float, int, int]] = []
    n_spans = 0
    for g, it in enumerate(items):
        if len(spans_char[g]) != it.span_labels.size:
            raise ValueError(
                f"generation {keys[g]!r}: {it.span_labels.size} span labels but {len(spans_char[g])} char ranges"
            )
        scores = span_max_scores(it)
        for j, (score, label) in enumerate(zip(scores.tolist(), it.span_labels.tolist())):
            if math.isnan(score):
                continue
            n_spans += 1
            if label == 0 and score >= thr:
                fps.append((score, g, j))
            elif label == 1 and score < thr:
                fns.append((score, g, j))
    fps.sort(key=lambda t: (-t[0], t[1], t[2]))
    fns.sort(key=lambda t: (t[0], t[1], t[2]))

    def record(score: float, g: int, j: int) -> dict[str, Any]:
        start, end = (int(v) for v in spans_char[g][j])
        return {
            "key": str(keys[g]),
            "generation": g,
            "span": j,
            "start": start,
            "end": end,
            "score": _f(score),
            "label": int(items[g].span_labels[j]),
            **_snippet(texts[g], start, end, context_chars),
        }

    return {
        "threshold": thr,
        "n_spans": n_spans,
        "n_false_positives": len(fps),
        "n_false_negatives": len(fns),
        "false_positives": [record(*t) for t in fps[: max(0, k)]],
        "false_negatives": [record(*t) for t in fns[: max(0, k)]],
    }


# --------------------------------------------------------------------------- label suspects


def _fold_of(key: str, n_folds: int, salt: str = "probelens-cv") -> int:
    """Stable fold of a generation: depends on its key only, not on order or run."""
    digest = hashlib.sha256((salt + str(key)).encode("utf-8")).digest()
    u = struct.unpack(">Q", digest[:8])[0] / 2.0**64
    return min(n_folds - 1, int(u * n_folds))


def label_error_suspects(
    train_examples: Sequence[tuple[Any, Any, Any, Any, str]],
    n_folds: int = 5,
    config: TrainConfig | None = None,
    top: int = 50,
    min_confidence: float = 0.5,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> list[dict[str, Any]]:
    """Spans whose gold label an out-of-fold probe confidently contradicts.

    A probe cannot fit a few wrong labels among many right ones, so a span whose label
    disagrees sharply with a probe that never saw it is worth a second look by an
    annotator (confident-learning style). Generations are assigned to ``n_folds`` folds
    by a stable hash of their key; for each fold a probe is trained on the others
    (``core.probe``, quick ``config``, default :data:`QUICK_TRAIN`) and scores the held-out
    generations. Each span's out-of-fold ``span_max`` score is compared with its label:
    ``confidence = |score - label|``; spans with ``confidence > min_confidence`` (the probe
    at 0.5 disagrees) are returned, highest first, at most ``top``.

    ``train_examples``: ``(hidden [T, H], labels [T], span_ids [T], span_labels [S], key)``
    as :func:`core.probe.build_training_set` takes. Folds whose training side lacks a
    class are skipped (their spans get no score). Each suspect: ``{"key", "generation",
    "span", "label", "score", "confidence", "fold", "kind"}``, kind ``"gold_1_low_score"``
    or ``"gold_0_high_score"``.
    """
    if int(n_folds) != n_folds or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    n_folds = int(n_folds)
    config = config or QUICK_TRAIN
    examples = list(train_examples)
    folds = [_fold_of(str(ex[4]), n_folds) for ex in examples]
    scored: list[tuple[float, int, int, int, float, int]] = []  # (-conf, gen, span, label, score, fold)
    n_trained = 0
    for f in range(n_folds):
        check(cancel)
        report(progress, "folds", f, n_folds, f"fold {f + 1}/{n_folds}")
        held = [i for i, fo in enumerate(folds) if fo == f]
        train = [examples[i] for i, fo in enumerate(folds) if fo != f]
        if not held or not train:
            continue
        try:
            data = build_training_set(train, span_weight=config.span_weight)
        except UserError:
            continue  # e.g. the other folds have no positive tokens
        probe, _ = train_probe(data, config, cancel=cancel)
        n_trained += 1
        for i in held:
            hidden, labels, span_ids, span_labels, _key = examples[i]
            p = probe.predict(hidden)
            if isinstance(p, torch.Tensor):
                p = p.detach().cpu().numpy()
            sl = np.asarray(span_labels, dtype=np.float64).reshape(-1)
            sid = np.asarray(span_ids.cpu() if isinstance(span_ids, torch.Tensor) else span_ids).reshape(-1)
            item = ItemScores(
                labels=np.zeros(sid.size, dtype=np.int8),
                span_ids=sid,
                span_labels=(sl > 0.5).astype(np.int8),
                probe=np.asarray(p, dtype=np.float64).reshape(-1),
                logprobs=np.zeros(sid.size),
                entropies=np.zeros(sid.size),
            )
            for j, score in enumerate(span_max_scores(item).tolist()):
                if math.isnan(score) or sl[j] not in (0.0, 1.0):
                    continue  # no token, or an excluded (negative) span label
                label = int(sl[j])
                scored.append((-abs(score - label), i, j, label, score, f))
    report(progress, "folds", n_folds, n_folds, "done")
    if n_trained == 0:
        raise UserError(
            "no fold could be trained: every fold's training side lacks labelled tokens of one class; add data"
        )
    scored.sort()
    out = []
    for neg_conf, i, j, label, score, f in scored:
        if -neg_conf <= min_confidence or len(out) >= top:
            break
        out.append(
            {
                "key": str(examples[i][4]),
                "generation": i,
                "span": j,
                "label": label,
                "score": _f(score),
                "confidence": _f(-neg_conf),
                "fold": f,
                "kind": "gold_1_low_score" if label == 1 else "gold_0_high_score",
            }
        )
    return out
