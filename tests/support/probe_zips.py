"""Probe zips built in tests: a clean upload for the tiny model, and the parts to spoil one."""

from __future__ import annotations

import io
import json
import zipfile

import torch
from safetensors.torch import save as save_tensors


def good_config(lm, **changes) -> dict:
    config = {
        "model_id": lm.model_id,
        "tokenizer_hash": lm.tokenizer_hash,
        "layer": 1,
        "hidden_size": lm.hidden_size,
        "training_data_hash": None,
        "version": 7,
        "format_version": 1,
        "created_at": "2026-01-01T00:00:00Z",
        "train_config": {"lr": 0.001, "datasets": ["a"]},
        "label_mapping": {"Not Supported": 1, "Insufficient Information": 1, "Supported": 0, "N/A": None},
        "metrics": {},
    }
    config.update(changes)
    return config


def weights(hidden_size: int, fill: float = 0.0) -> bytes:
    return save_tensors({"weight": torch.full((hidden_size,), fill), "bias": torch.zeros(1)})


def zip_of(members: dict[str, bytes | str], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def probe_zip(lm, config: dict | str | bytes | None = None, **changes) -> bytes:
    if config is None:
        config = good_config(lm, **changes)
    text = config if isinstance(config, (str, bytes)) else json.dumps(config)
    return zip_of({"config.json": text, "probe.safetensors": weights(lm.hidden_size)})
