"""A probe version's `config.json`: what it holds, how it is read, which files form a probe.

No torch here, so storage (`db`) can describe probes without importing the model stack.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.base.errors import UserError
from core.base.types import LABEL_VALUES

PROBE_FILE = "probe.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1



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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProbeConfig:
        if not isinstance(d, dict):
            raise UserError("probe config must be a JSON object")
        fmt = d.get("format_version", FORMAT_VERSION)
        if not isinstance(fmt, int) or fmt > FORMAT_VERSION:
            raise UserError(
                f"probe format version {fmt!r} is newer than this ProbeLens supports ({FORMAT_VERSION})"
            )
        missing = [k for k in ("model_id", "layer", "hidden_size") if k not in d]
        if missing:
            raise UserError(f"probe config lacks {', '.join(missing)}")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        kwargs.setdefault("tokenizer_hash", None)
        cfg = cls(**kwargs)
        try:
            cfg.layer = int(cfg.layer)
            cfg.hidden_size = int(cfg.hidden_size)
        except (TypeError, ValueError):
            raise UserError("probe config: layer and hidden_size must be integers") from None
        return cfg


def is_probe_dir(directory: str | os.PathLike) -> bool:
    p = Path(directory)
    return (p / PROBE_FILE).is_file() and (p / CONFIG_FILE).is_file()
