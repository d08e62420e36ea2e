"""The params of the runs that need no more than a version or a size: re-score and demo seed.

(Batch generation and retrain have richer params beside their code: `batch.BatchParams`,
`retrain.RetrainParams`.) Each type round-trips through the run row's JSON with `to_dict` /
`from_dict`; `runs.RUN_KINDS` names the type of every run kind.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RescoreParams:
    """Store the per-token scores of probe `probe_version` for every answer (`model`: None = the
    default). The run row keeps the key "version", as rows written before always had."""

    probe_version: int
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.probe_version, "model": self.model}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RescoreParams:
        return cls(probe_version=int(data["version"]), model=data.get("model"))


@dataclass(frozen=True)
class SeedParams:
    """The first-run demo: `size` answers (None: the setting's default) with `model`."""

    size: int | None = None
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeedParams:
        size = data.get("size")
        return cls(size=int(size) if size is not None else None, model=data.get("model"))
