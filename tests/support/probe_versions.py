"""Probe versions registered in tests without training: a seeded random linear probe, for the
model given or (model_id/hidden_size changed) for another model."""

from __future__ import annotations


def register_linear_probe(
    database, lm, *, activate: bool = True, seed: int = 0, model_id: str | None = None, hidden_size: int | None = None
) -> int:
    """Register a random linear probe for `lm` (or, with `model_id`/`hidden_size`, one whose files
    say it was trained on another model); returns its version number."""
    import torch

    from core.orchestration.registry import register_version
    from core.probes.config import ProbeConfig
    from core.probes.files import save_probe
    from core.probes.linear import LinearProbe

    size = hidden_size if hidden_size is not None else lm.hidden_size
    torch.manual_seed(seed)
    probe = LinearProbe(size)

    def write(staging, version):
        config = ProbeConfig(
            model_id=model_id if model_id is not None else lm.model_id,
            tokenizer_hash=lm.tokenizer_hash,
            layer=lm.default_layer,
            hidden_size=size,
            version=version,
        )
        save_probe(staging, probe, config)
        return config

    return register_version(database, write, activate=activate).probe_version
