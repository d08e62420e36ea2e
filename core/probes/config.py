"""A probe version's `config.json`: what it holds, how it is read, which files form a probe.

No torch here, so storage (`db`) can describe probes without importing the model stack.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.base.errors import UserError
from core.base.types import LABEL_VALUES
from core.probes.stored_metrics import trusted_metrics

PROBE_FILE = "probe.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1
MAX_KIND = 32  # a kind name: which implementation reads the files (`core.probes.kinds.KINDS`)
ADAPTER_DIR = "adapter"  # PEFT's own files (adapter_config.json, adapter_model.safetensors)


def _utc_now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class ProbeConfig:
    """What ``config.json`` holds; everything needed to trust and reuse a probe."""

    model_id: str
    tokenizer_hash: str | None
    layer: int
    hidden_size: int
    label_mapping: dict[str, int | None] = field(default_factory=lambda: dict(LABEL_VALUES))
    training_data_hash: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=_utc_now)
    version: int | str = 1
    format_version: int = FORMAT_VERSION
    train_config: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # where the weights came from when not trained here: "paper"
    kind: str = "linear"  # the name of its kind in `core.probes.kinds.KINDS` (LoRA: PEFT files in adapter/)
    lora: dict[str, Any] = field(default_factory=dict)  # the LoRA settings of a "lora" probe

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any, *, untrusted: bool = False) -> ProbeConfig:
        """A config from parsed JSON, every field checked (types, ranges, required fields).

        `untrusted` (an uploaded file): the tokenizer hash must be hex when given (the
        caller requires it once the model matched), and the metrics keep only what
        validates (:func:`core.probes.stored_metrics.trusted_metrics`). Unknown keys are
        ignored: never read, never stored. Raises UserError with one message.
        """
        return _validated(d, untrusted)


# --- validation -----------------------------------------------------------------------------------

MAX_CONFIG_BYTES = 4 * 1024 * 1024  # our own config.json (with its validation ids) stays far below
MAX_DEPTH = 24  # ours nests 6 deep
MAX_LAYER = 10_000
MAX_HIDDEN_SIZE = 1_000_000
MAX_TEXT = 1000
MAX_HASH = 64  # the database columns' width
MAX_MODEL_ID = 500  # the models table's width
MAX_ITEMS = 1000
_HEX = frozenset("0123456789abcdefABCDEF")


def parse_config_json(data: bytes, where: str = "config.json") -> Any:
    """Parse config bytes with bounded size and nesting: UserError instead of MemoryError or
    RecursionError. NaN and Infinity literals are refused; numbers too large for a float
    (1e999) parse as infinity and are refused by the field checks."""
    if len(data) > MAX_CONFIG_BYTES:
        raise UserError(f"{where} is {len(data) // 1024} KB; the limit is {MAX_CONFIG_BYTES // 1024} KB")

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    try:
        raw = json.loads(data.decode("utf-8"), parse_constant=no_constants)
    except RecursionError:
        raise UserError(f"{where} is nested too deeply (the limit is {MAX_DEPTH} levels)") from None
    except UnicodeDecodeError:
        raise UserError(f"{where} is not UTF-8 text") from None
    except ValueError as e:  # JSONDecodeError among them
        raise UserError(f"{where} is not valid JSON: {str(e)[:200]}") from None
    if _depth_exceeds(raw, MAX_DEPTH):
        raise UserError(f"{where} is nested too deeply (the limit is {MAX_DEPTH} levels)")
    return raw


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return False


def _shown(value: Any) -> str:
    """A value as a message may show it: the type for containers and text, the number otherwise."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        text = repr(value)
        return text if len(text) <= 24 else text[:20] + "..."
    names: dict[type, str] = {dict: "an object", list: "a list", str: "text"}
    return names.get(type(value), type(value).__name__)


def _bad(key: str, want: str, value: Any) -> UserError:
    return UserError(f"probe config: {key} must be {want}, not {_shown(value)}")


def _integer(d: dict, key: str, low: int, high: int) -> int:
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(key, f"a whole number from {low} to {high}", value)
    return value


def _string(d: dict, key: str, limit: int = MAX_TEXT, *, optional: bool = False) -> str | None:
    value = d.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        raise _bad(
            key, f"non-empty text of at most {limit} printable characters" + (" or null" if optional else ""), value
        )
    return value


def _label_mapping(value: Any) -> dict[str, int | None]:
    ok = (
        isinstance(value, dict)
        and 0 < len(value) <= 64
        and all(isinstance(k, str) and 0 < len(k) <= 100 and k.isprintable() for k in value)
        and all(v is None or (type(v) is int and v in (0, 1)) for v in value.values())
    )
    if not ok:
        raise _bad("label_mapping", "an object of label names to 0, 1 or null", value)
    return dict(value)


def _scalar_ok(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) <= 10**18
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) and len(value) <= MAX_TEXT


def _train_config(value: Any) -> dict[str, Any]:
    ok = (
        isinstance(value, dict)
        and len(value) <= 100
        and all(isinstance(k, str) and 0 < len(k) <= 100 for k in value)
        and all(
            _scalar_ok(v) or (isinstance(v, list) and len(v) <= MAX_ITEMS and all(map(_scalar_ok, v)))
            for v in value.values()
        )
    )
    if not ok:
        raise _bad("train_config", "an object of settings (numbers, text, true/false, null or short lists)", value)
    return dict(value)


def _validated(d: Any, untrusted: bool) -> ProbeConfig:
    if not isinstance(d, dict):
        raise UserError("probe config must be a JSON object")
    fmt = d.get("format_version", FORMAT_VERSION)
    if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > FORMAT_VERSION:
        raise UserError(f"probe format version {fmt} is newer than this ProbeLens supports ({FORMAT_VERSION})")
    missing = [k for k in ("model_id", "layer", "hidden_size") if k not in d]
    if missing:
        raise UserError(f"probe config lacks {', '.join(missing)}")
    kwargs: dict[str, Any] = {
        "format_version": _integer({"format_version": fmt}, "format_version", 1, FORMAT_VERSION),
        "model_id": _string(d, "model_id", MAX_MODEL_ID),
        "layer": _integer(d, "layer", 0, MAX_LAYER - 1),
        "hidden_size": _integer(d, "hidden_size", 1, MAX_HIDDEN_SIZE),
        "tokenizer_hash": _string(d, "tokenizer_hash", MAX_HASH, optional=True),
        "training_data_hash": _string(d, "training_data_hash", MAX_HASH, optional=True),
    }
    if untrusted and kwargs["tokenizer_hash"] is not None and not set(kwargs["tokenizer_hash"]) <= _HEX:
        raise _bad("tokenizer_hash", "a hexadecimal hash", kwargs["tokenizer_hash"])
    if "label_mapping" in d:
        kwargs["label_mapping"] = _label_mapping(d["label_mapping"])
    if "created_at" in d:
        kwargs["created_at"] = _string(d, "created_at", 64)
    if "version" in d:
        version = d["version"]
        if isinstance(version, str):
            kwargs["version"] = _string(d, "version", 64)
        else:
            kwargs["version"] = _integer(d, "version", 0, 10**9)
    if "train_config" in d:
        kwargs["train_config"] = _train_config(d["train_config"])
    if d.get("source") is not None:
        kwargs["source"] = _string(d, "source", 32)
    if "kind" in d:
        # The name only: which names exist is the kinds table's business (torch-free here, so
        # storage can read configs); loading or uploading a probe of an unknown kind is refused there.
        kind = d["kind"]
        if not isinstance(kind, str) or not kind.isidentifier() or len(kind) > MAX_KIND:
            raise _bad("kind", f"a kind name (letters, digits and _, at most {MAX_KIND})", kind)
        kwargs["kind"] = kind
    if "lora" in d:
        kwargs["lora"] = _train_config(d["lora"])
    metrics = d.get("metrics")
    if untrusted:
        kwargs["metrics"] = trusted_metrics(metrics)
    else:
        kwargs["metrics"] = metrics if isinstance(metrics, dict) else {}
    return ProbeConfig(**kwargs)


def is_probe_dir(directory: str | os.PathLike) -> bool:
    p = Path(directory)
    return (p / PROBE_FILE).is_file() and (p / CONFIG_FILE).is_file()
