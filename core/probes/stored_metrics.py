"""Stored metrics, read tolerantly, and the part of an uploaded probe's metrics we keep.

A version's metrics (its database row, its `config.json`) come from our own training, or
from an older release, or from an uploaded file someone else wrote. Readers never trust
their shape: every lookup here gives a plain value or None, never raises, whatever the
row holds (a list where a dict belongs, text where a number belongs, nothing at all).

An upload keeps only the sections of the metrics JSON whose every known field validates
(`trusted_metrics`); the rest is dropped, never stored. No torch here: `db` reads this
through `core.probes.config`.
"""

from __future__ import annotations

import math
from typing import Any

from core.base.numbers import finite_or_none

LEVELS: tuple[str, ...] = ("token", "span", "span_max")
BASELINES: tuple[str, ...] = ("logprob", "entropy")
HEADLINE = ("span_max", "auc")

# --- tolerant readers ---------------------------------------------------------------------------


def section(metrics: Any, *path: str) -> dict[str, Any]:
    """The dict at `path` inside `metrics` ({} when anything on the way is missing or not a dict)."""
    node = metrics
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def number(metrics: Any, *path: str) -> float | None:
    """The finite number at `path` (e.g. "span_max", "auc"), else None."""
    if not path:
        return None
    return finite_or_none(section(metrics, *path[:-1]).get(path[-1]))


def whole(value: Any) -> int | None:
    """A non-negative int (not a bool), else None: counts, version numbers."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def text(value: Any, limit: int = 200) -> str | None:
    """A short single-line string, else None."""
    if not isinstance(value, str) or not value or len(value) > limit:
        return None
    return value if value.isprintable() else None


def headline_auc(metrics: Any) -> float | None:
    """The span_max AUC a version is known by (None when missing or odd)."""
    return number(metrics, *HEADLINE)


# --- what an upload may keep ----------------------------------------------------------------------

_UNIT = "unit"  # finite float in [0, 1] or None
_COUNT = "count"  # int >= 0
LEVEL_FIELDS: dict[str, str] = {
    "n": _COUNT,
    "n_pos": _COUNT,
    "auc": _UNIT,
    "recall_at_fpr_0.1": _UNIT,
    "recall_at_fpr_0.01": _UNIT,
    "threshold": _UNIT,
    "precision": _UNIT,
    "recall": _UNIT,
    "f1": _UNIT,
    "ece": _UNIT,
}
COUNT_FIELDS: tuple[str, ...] = ("generations", "tokens", "spans", "positive_spans")
_MAX_COUNT = 10**12


def _field_ok(kind: str, value: Any) -> bool:
    if kind == _COUNT:
        return whole(value) is not None and value <= _MAX_COUNT
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and 0.0 <= value <= 1.0


def _level(raw: Any) -> dict[str, Any] | None:
    """One level's metrics (known fields only), or None if any known field is wrong."""
    if not isinstance(raw, dict):
        return None
    kept = {k: raw[k] for k in LEVEL_FIELDS if k in raw}
    if "auc" not in kept or not all(_field_ok(LEVEL_FIELDS[k], v) for k, v in kept.items()):
        return None
    if "n" in kept and "n_pos" in kept and kept["n_pos"] > kept["n"]:
        return None
    return {k: float(v) if isinstance(v, int) and LEVEL_FIELDS[k] == _UNIT else v for k, v in kept.items()}


def _baseline(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    head = _level({k: raw.get(k) for k in ("auc", "recall_at_fpr_0.1") if k in raw})
    if head is None:
        return None
    levels = {name: _level(raw[name]) for name in LEVELS if name in raw}
    if any(v is None for v in levels.values()):
        return None
    return {**head, **levels}


def _report(raw: Any) -> dict[str, Any]:
    """Levels, baselines and counts of one metrics report, each kept only if it validates."""
    out: dict[str, Any] = {}
    if not isinstance(raw, dict):
        return out
    for name in LEVELS:
        level = _level(raw.get(name))
        if level is not None:
            out[name] = level
    baselines = raw.get("baselines")
    if isinstance(baselines, dict):
        kept = {name: _baseline(baselines.get(name)) for name in BASELINES}
        kept = {k: v for k, v in kept.items() if v is not None}
        if kept:
            out["baselines"] = kept
    counts = raw.get("counts")
    if isinstance(counts, dict) and all(_field_ok(_COUNT, counts.get(k)) for k in COUNT_FIELDS):
        out["counts"] = {k: counts[k] for k in COUNT_FIELDS}
    return out


def trusted_metrics(raw: Any) -> dict[str, Any]:
    """What an uploaded probe's metrics may contribute: the sections of our metrics JSON that
    validate (levels with numbers in [0, 1], baselines, counts, the training side, split,
    layer, model, answer counts). Everything else is dropped, never stored: a `comparison`
    or `validation_ids` speaks of another database's versions and answers."""
    if not isinstance(raw, dict):
        return {}
    out = _report(raw)
    train = _report(raw.get("train"))
    if train:
        out["train"] = train
    for key in ("split", "model"):
        value = text(raw.get(key), 1000)
        if value is not None:
            out[key] = value
    for key in ("layer", "n_train", "n_validation"):
        count = whole(raw.get(key))
        if count is not None and count <= _MAX_COUNT:
            out[key] = count
    return out
