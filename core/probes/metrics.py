"""Token / span / span_max metrics, uncertainty baselines, calibration and bootstrap CIs.

Everything here is plain numpy + scikit-learn (no torch), deterministic, and returns
JSON-ready values: plain python ints/floats, and ``None`` (JSON null) wherever a metric
is undefined (empty input, a single class, no predicted positives, ...). Undefined values
never raise and never produce NaN. Malformed input (mismatched lengths, labels other than
0/1, NaN scores) is a programming error upstream and raises ``ValueError``.

Levels (see METHOD.md, Evaluation):

- ``token``: every completion token whose label is not ``-1`` (ignored);
- ``span``: the tokens inside scored spans (``span_ids >= 0``), label not ``-1``;
- ``span_max``: one value per span, the max token score over the span's tokens, labelled
  with the span's label. This is the headline level.

Baselines: ``logprob`` scores a token by ``-logprob`` (a less likely token is riskier),
``entropy`` by the model's predictive entropy. Their scores are not probabilities, so
only the ranking metrics (AUC, recall at a fixed false-positive rate) are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.metrics import auc as _sk_auc
from sklearn.metrics import precision_recall_fscore_support, roc_curve

from core.base.progress import CancelToken, ProgressFn, check, report

LEVELS: tuple[str, ...] = ("token", "span", "span_max")
HEADLINE_LEVEL = "span_max"
ScoreKind = Literal["probe", "neg_logprob", "entropy"]
BASELINES: dict[str, ScoreKind] = {"logprob": "neg_logprob", "entropy": "entropy"}
FPR_POINTS: tuple[float, ...] = (0.1, 0.01)


# --------------------------------------------------------------------------- helpers


def _fpr_key(max_fpr: float) -> str:
    return f"recall_at_fpr_{max_fpr:g}"


def _as_binary(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate and flatten (labels in {0, 1}, finite-or-infinite float scores)."""
    y = np.asarray(y_true).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values but scores has {s.size}")
    if y.size:
        if y.dtype == bool:
            y = y.astype(np.int8)
        elif not np.all((y == 0) | (y == 1)):
            bad = np.unique(y[(y != 0) & (y != 1)])[:5]
            raise ValueError(f"labels must be 0 or 1 (ignored tokens filtered out first); got {bad.tolist()}")
        if np.isnan(s).any():
            raise ValueError("scores contain NaN")
    return y.astype(np.int8, copy=False), s


def both_classes(y: np.ndarray) -> bool:
    if y.size == 0:
        return False
    n_pos = int(np.count_nonzero(y))
    return 0 < n_pos < y.size


def _rankable(s: np.ndarray) -> np.ndarray:
    """scikit-learn rejects infinite scores; replace them order-preservingly by dense ranks."""
    if np.isfinite(s).all():
        return s
    _, inverse = np.unique(s, return_inverse=True)
    return inverse.astype(np.float64)


def _roc(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(fpr, tpr) of every distinct threshold, or None when the curve is undefined."""
    if not both_classes(y):
        return None
    fpr, tpr, _ = roc_curve(y, _rankable(s), pos_label=1, drop_intermediate=False)
    return fpr, tpr


def _recall_from_roc(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    # roc_curve always starts at (0, 0), so the selection is never empty.
    return float(tpr[fpr <= max_fpr].max())


def _nan_to_none(x: float) -> float | None:
    x = float(x)
    return None if np.isnan(x) else x


# --------------------------------------------------------------------------- ranking metrics


def auc_score(y_true: Any, scores: Any) -> float | None:
    """ROC AUC (equal to ``sklearn.metrics.roc_auc_score``); None if a class is missing."""
    y, s = _as_binary(y_true, scores)
    roc = _roc(y, s)
    return None if roc is None else float(_sk_auc(*roc))


def recall_at_fpr(y_true: Any, scores: Any, max_fpr: float = 0.1) -> float | None:
    """Highest TPR over the ROC curve's points whose FPR <= ``max_fpr`` (no interpolation).

    None if only one class (or nothing) is present.
    """
    y, s = _as_binary(y_true, scores)
    roc = _roc(y, s)
    return None if roc is None else _recall_from_roc(*roc, max_fpr)


# --------------------------------------------------------------------------- calibration


def _as_probs(y_true: Any, probs: Any, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    y, p = _as_binary(y_true, probs)
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise ValueError("probabilities must lie in [0, 1]")
    return y, p


def _bin_stats(y: np.ndarray, p: np.ndarray, n_bins: int):
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    # Same bin assignment as sklearn.calibration.calibration_curve(strategy="uniform"):
    # bins are [lo, hi) except the last, which is [lo, 1].
    idx = np.searchsorted(edges[1:-1], p, side="right")
    count = np.bincount(idx, minlength=n_bins)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    sum_y = np.bincount(idx, weights=y.astype(np.float64), minlength=n_bins)
    return edges, count, sum_p, sum_y


def reliability_bins(y_true: Any, probs: Any, n_bins: int = 10) -> list[dict[str, Any]]:
    """Equal-width bins on [0, 1] for a reliability diagram.

    Every bin is listed, empty ones with ``count`` 0 and ``mean_prob``/``frac_pos`` None.
    """
    y, p = _as_probs(y_true, probs, n_bins)
    edges, count, sum_p, sum_y = _bin_stats(y, p, n_bins)
    out = []
    for i in range(int(n_bins)):
        c = int(count[i])
        out.append(
            {
                "bin_lo": float(edges[i]),
                "bin_hi": float(edges[i + 1]),
                "count": c,
                "mean_prob": float(sum_p[i] / c) if c else None,
                "frac_pos": float(sum_y[i] / c) if c else None,
            }
        )
    return out


def expected_calibration_error(y_true: Any, probs: Any, n_bins: int = 10) -> float | None:
    """Sum over equal-width bins of (bin share) * |mean prob - fraction positive|.

    None for empty input (undefined).
    """
    y, p = _as_probs(y_true, probs, n_bins)
    if p.size == 0:
        return None
    _, count, sum_p, sum_y = _bin_stats(y, p, n_bins)
    # sum_b (n_b / n) * |sum_p_b / n_b - sum_y_b / n_b| == sum_b |sum_p_b - sum_y_b| / n
    return float(np.abs(sum_p - sum_y).sum() / p.size)


# --------------------------------------------------------------------------- one level


def binary_metrics(y_true: Any, scores: Any, threshold: float | None = 0.5) -> dict[str, Any]:
    """All metrics of one level.

    Always: ``n``, ``n_pos``, ``auc``, ``recall_at_fpr_0.1``, ``recall_at_fpr_0.01``.
    When ``threshold`` is not None (the scores are probabilities): ``threshold``,
    ``precision``, ``recall``, ``f1`` (a token is predicted positive when
    ``score >= threshold``) and ``ece`` (10 bins; None if scores leave [0, 1]).
    Undefined values are None.
    """
    y, s = _as_binary(y_true, scores)
    n = int(y.size)
    n_pos = int(np.count_nonzero(y))
    out: dict[str, Any] = {"n": n, "n_pos": n_pos}
    roc = _roc(y, s)
    out["auc"] = None if roc is None else float(_sk_auc(*roc))
    for max_fpr in FPR_POINTS:
        out[_fpr_key(max_fpr)] = None if roc is None else _recall_from_roc(*roc, max_fpr)
    if threshold is None:
        return out

    threshold = float(threshold)
    out["threshold"] = threshold
    if n == 0:
        out.update(precision=None, recall=None, f1=None, ece=None)
        return out
    pred = (s >= threshold).astype(np.int8)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, pred, average="binary", pos_label=1, labels=[0, 1], zero_division=np.nan
    )
    out["precision"] = _nan_to_none(precision)
    out["recall"] = _nan_to_none(recall)
    out["f1"] = _nan_to_none(f1)
    in_range = bool(s.min() >= 0.0 and s.max() <= 1.0)
    out["ece"] = expected_calibration_error(y, s) if in_range else None
    return out


# --------------------------------------------------------------------------- per-generation scores


@dataclass
class ItemScores:
    """Scores and labels of one generation's completion tokens (all arrays the same length).

    labels:      int8 per token: 1 hallucinated, 0 supported/background, -1 ignored.
    span_ids:    int32 per token: -1 outside scored spans, else an index into span_labels.
    span_labels: int8 0/1 per span.
    probe:       probe probability per token, or None (baselines only).
    logprobs:    log-probability of the actual token.
    entropies:   predictive entropy (nats) at the token.
    """

    labels: np.ndarray
    span_ids: np.ndarray
    span_labels: np.ndarray
    probe: np.ndarray | None
    logprobs: np.ndarray
    entropies: np.ndarray

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels).reshape(-1).astype(np.int64)
        span_ids = np.asarray(self.span_ids).reshape(-1).astype(np.int64)
        span_labels = np.asarray(self.span_labels).reshape(-1).astype(np.int64)
        n = labels.size
        arrays = {
            "span_ids": span_ids,
            "logprobs": np.asarray(self.logprobs, dtype=np.float64).reshape(-1),
            "entropies": np.asarray(self.entropies, dtype=np.float64).reshape(-1),
        }
        if self.probe is not None:
            arrays["probe"] = np.asarray(self.probe, dtype=np.float64).reshape(-1)
        for name, arr in arrays.items():
            if arr.size != n:
                raise ValueError(f"ItemScores: labels has {n} tokens but {name} has {arr.size}")
        if n and not np.isin(labels, (-1, 0, 1)).all():
            raise ValueError("ItemScores: labels must be -1, 0 or 1")
        if span_labels.size and not np.isin(span_labels, (0, 1)).all():
            raise ValueError("ItemScores: span_labels must be 0 or 1")
        if n and (span_ids.min() < -1 or span_ids.max() >= span_labels.size):
            raise ValueError(f"ItemScores: span_ids must be -1 or in [0, {span_labels.size}) (one per span label)")
        self.labels = labels.astype(np.int8)
        self.span_ids = span_ids.astype(np.int32)
        self.span_labels = span_labels.astype(np.int8)
        self.logprobs = arrays["logprobs"]
        self.entropies = arrays["entropies"]
        self.probe = arrays.get("probe")

    def __len__(self) -> int:
        return int(self.labels.size)


def _item_scores(item: ItemScores, which: ScoreKind) -> np.ndarray:
    if which == "probe":
        if item.probe is None:
            raise ValueError("an item has no probe scores")
        return item.probe
    if which == "neg_logprob":
        return -item.logprobs
    if which == "entropy":
        return item.entropies
    raise ValueError(f"unknown score kind {which!r}; expected probe, neg_logprob or entropy")


def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)


def _level(items: Sequence[ItemScores], which: ScoreKind, level: str) -> tuple[np.ndarray, np.ndarray]:
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; expected one of {', '.join(LEVELS)}")
    if level in ("token", "span"):
        ys, ss = [], []
        for it in items:
            mask = it.labels != -1
            if level == "span":
                mask &= it.span_ids >= 0
            ys.append(it.labels[mask])
            ss.append(_item_scores(it, which)[mask])
        return _concat(ys, np.int8), _concat(ss, np.float64)

    # span_max: give every span a global id, then one scatter-max over all tokens.
    gids, ss, span_labels = [], [], []
    offset = 0
    for it in items:
        inside = it.span_ids >= 0
        gids.append(it.span_ids[inside].astype(np.int64) + offset)
        ss.append(_item_scores(it, which)[inside])
        span_labels.append(it.span_labels)
        offset += it.span_labels.size
    gid = _concat(gids, np.int64)
    s = _concat(ss, np.float64)
    best = np.full(offset, -np.inf)
    np.maximum.at(best, gid, s)
    has_tokens = np.bincount(gid, minlength=offset) > 0  # spans with no token are not scored
    return _concat(span_labels, np.int8)[has_tokens], best[has_tokens]


def level_arrays(items: Sequence[ItemScores], which: ScoreKind = "probe") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{level: (y, scores)}`` for ``token``, ``span`` and ``span_max``.

    ``which``: ``probe`` (probabilities), ``neg_logprob`` (-logprob) or ``entropy``.
    """
    return {level: _level(items, which, level) for level in LEVELS}


# --------------------------------------------------------------------------- the metrics JSON


def evaluate_items(items: Sequence[ItemScores], threshold: float | None = 0.5) -> dict[str, Any]:
    """The metrics JSON of the CLI/probe config.

    ``{"token": {...}, "span": {...}, "span_max": {...},
       "baselines": {"logprob": {...}, "entropy": {...}},
       "counts": {"generations", "tokens", "spans", "positive_spans"}}``

    Probe levels are present only if every item has probe scores (items without any probe
    scores give a baselines-only report; a mix is an error). Each baseline has top-level
    ``auc`` and ``recall_at_fpr_0.1`` of its ``span_max`` level, plus per-level dicts.
    """
    items = list(items)
    with_probe = sum(it.probe is not None for it in items)
    if 0 < with_probe < len(items):
        raise ValueError(f"{len(items) - with_probe} of {len(items)} items have no probe scores")

    out: dict[str, Any] = {}
    if with_probe == len(items):
        for level, (y, s) in level_arrays(items, "probe").items():
            out[level] = binary_metrics(y, s, threshold)

    baselines: dict[str, Any] = {}
    for name, which in BASELINES.items():
        per_level = {level: binary_metrics(y, s, None) for level, (y, s) in level_arrays(items, which).items()}
        head = per_level[HEADLINE_LEVEL]
        baselines[name] = {"auc": head["auc"], _fpr_key(0.1): head[_fpr_key(0.1)], **per_level}
    out["baselines"] = baselines

    n_tokens = sum(int(np.count_nonzero(it.labels != -1)) for it in items)
    y_spans, _ = _level(items, "neg_logprob", "span_max")
    out["counts"] = {
        "generations": len(items),
        "tokens": n_tokens,
        "spans": int(y_spans.size),
        "positive_spans": int(np.count_nonzero(y_spans)),
    }
    return out


# --------------------------------------------------------------------------- uncertainty


def level_metric(
    level: str = HEADLINE_LEVEL,
    metric: str = "auc",
    which: ScoreKind = "probe",
    threshold: float | None = None,
) -> Callable[[Sequence[ItemScores]], float | None]:
    """A ``metric_fn`` for ``bootstrap_ci``: items -> one value of ``binary_metrics``.

    E.g. ``level_metric("span_max", "recall_at_fpr_0.1", which="entropy")``. Thresholded
    metrics (precision, recall, f1, ece) need ``threshold``.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; expected one of {', '.join(LEVELS)}")

    def fn(items: Sequence[ItemScores]) -> float | None:
        y, s = _level(items, which, level)
        if metric == "auc":
            return auc_score(y, s)
        result = binary_metrics(y, s, threshold)
        if metric not in result:
            raise ValueError(f"unknown metric {metric!r} (threshold={threshold!r})")
        return result[metric]

    return fn


def bootstrap_ci(
    items: Sequence[ItemScores],
    metric_fn: Callable[[Sequence[ItemScores]], float | None],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> tuple[float | None, float | None]:
    """Percentile bootstrap CI of ``metric_fn(items)``, resampling generations (not tokens).

    Resamples where the metric is undefined (None, e.g. a single class) are skipped;
    ``(None, None)`` if no resample is defined. Deterministic for a fixed ``seed``.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    items = list(items)
    n = len(items)
    if n == 0:
        return None, None
    rng = np.random.default_rng(seed)
    values: list[float] = []
    step = max(1, n_boot // 100)
    for b in range(n_boot):
        check(cancel)
        idx = rng.integers(0, n, size=n)
        v = metric_fn([items[i] for i in idx])
        if v is not None and not np.isnan(v):
            values.append(float(v))
        if (b + 1) % step == 0 or b + 1 == n_boot:
            report(progress, "bootstrap", b + 1, n_boot)
    if not values:
        return None, None
    lo, hi = np.quantile(np.asarray(values), [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)
