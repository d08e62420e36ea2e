"""Shared plumbing of the diagnostics: one level's (labels, scores) and JSON-safe numbers.

Levels are ``token``, ``span`` and ``span_max`` (the headline, one score per entity span),
read through the same code path as the metrics JSON (:func:`core.probes.metrics.level_arrays`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from core.base.numbers import finite_or_none
from core.probes.metrics import LEVELS, ItemScores, ScoreKind, level_arrays

Level = Literal["token", "span", "span_max"]


def json_floats(a: Any) -> list[float | None]:
    return [finite_or_none(v) for v in np.asarray(a, dtype=np.float64).reshape(-1)]


def check_level(level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; expected one of {', '.join(LEVELS)}")


def level_scores(items: Sequence[ItemScores], which: ScoreKind, level: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) of one level, via the same code path as the metrics JSON."""
    check_level(level)
    y, s = level_arrays(list(items), which)[level]
    if np.isnan(s).any():
        raise ValueError(f"{which} scores contain NaN")
    return y, s


def require_probe(items: Sequence[ItemScores]) -> None:
    missing = sum(it.probe is None for it in items)
    if missing:
        raise ValueError(f"{missing} of {len(items)} items have no probe scores")


def sklearn_safe(s: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Scores scikit-learn accepts, plus how to map its thresholds back.

    ``-logprob`` is +inf for a token the model gave probability 0, and scikit-learn rejects
    infinities. Dense ranks keep the order (so the curves are unchanged) and every sklearn
    threshold is then a rank, i.e. an index into the returned unique values.
    """
    if np.isfinite(s).all():
        return s, None
    uniq, inverse = np.unique(s, return_inverse=True)
    return inverse.astype(np.float64), uniq


def map_thresholds(t: np.ndarray, uniq: np.ndarray | None) -> list[float | None]:
    if uniq is None:
        return json_floats(t)
    return [finite_or_none(uniq[int(v)]) if math.isfinite(v) else None for v in t]


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
