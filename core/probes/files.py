"""Probe directories on disk: `probe.safetensors` (`weight` [H], `bias` [1]) + `config.json`.

Writes are atomic (a temporary folder renamed into place); reads check the probe against
the model it is about to be used with.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from core.base.errors import ModelMismatchError, UserError
from core.probes.config import (
    CONFIG_FILE,
    FORMAT_VERSION,
    MAX_CONFIG_BYTES,
    PROBE_FILE,
    ProbeConfig,
    is_probe_dir,
    parse_config_json,
)
from core.probes.linear import LinearProbe


def save_probe(directory: str | os.PathLike, probe: LinearProbe, config: ProbeConfig) -> Path:
    """Write ``probe.safetensors`` + ``config.json`` atomically; returns the directory.

    Replaces an existing probe directory; refuses a non-empty directory that is not one.
    """
    target = Path(directory)
    H = probe.hidden_size
    if int(config.hidden_size) != H:
        raise UserError(f"probe config says hidden size {config.hidden_size} but the probe has {H}")
    if target.exists():
        if not target.is_dir():
            raise UserError(f"cannot save probe: {target} exists and is not a directory")
        if any(target.iterdir()) and not is_probe_dir(target):
            raise UserError(f"cannot save probe: {target} is a non-empty directory that is not a probe directory")
    parent = target.parent if str(target.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
    try:
        tensors = {
            "weight": probe.linear.weight.detach().to("cpu", torch.float32).reshape(-1).contiguous().clone(),
            "bias": probe.linear.bias.detach().to("cpu", torch.float32).reshape(1).contiguous().clone(),
        }
        save_file(tensors, str(tmp / PROBE_FILE), metadata={"format_version": str(FORMAT_VERSION)})
        with open(tmp / CONFIG_FILE, "w", encoding="utf-8") as f:
            json.dump(config.to_dict(), f, indent=2, sort_keys=True, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        old: Path | None = None
        if target.exists():
            if any(target.iterdir()):
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=parent))
                old.rmdir()
                os.rename(target, old)
            else:
                target.rmdir()
        os.rename(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _side(model_id: str | None, hidden_size: int | None, trained: bool) -> str:
    if model_id is None:
        return f"has hidden size {hidden_size}" if hidden_size is not None else "differs"
    text = f"'{model_id}'"
    if hidden_size is not None:
        text += f" (hidden size {hidden_size})"
    return ("on model " if trained else "is ") + text


def load_probe(
    directory: str | os.PathLike,
    expect_model_id: str | None = None,
    expect_tokenizer_hash: str | None = None,
    expect_hidden_size: int | None = None,
) -> tuple[LinearProbe, ProbeConfig]:
    """Load a probe directory, checking it against the model it is about to be used with."""
    d = Path(directory)
    if not d.is_dir():
        raise UserError(f"probe directory not found: {d}")
    for name in (CONFIG_FILE, PROBE_FILE):
        if not (d / name).is_file():
            raise UserError(f"not a probe directory: {d / name} is missing")
    try:
        if (d / CONFIG_FILE).stat().st_size > MAX_CONFIG_BYTES:
            raise UserError(f"{d / CONFIG_FILE} is larger than {MAX_CONFIG_BYTES // 1024} KB")
        raw = parse_config_json((d / CONFIG_FILE).read_bytes(), str(d / CONFIG_FILE))
    except OSError as e:
        raise UserError(f"cannot read {d / CONFIG_FILE}: {e}") from None
    config = ProbeConfig.from_dict(raw)
    try:
        tensors = load_file(str(d / PROBE_FILE))
    except Exception as e:  # safetensors raises several types for corrupt files
        raise UserError(f"cannot read {d / PROBE_FILE}: {e}") from None
    probe = checked_probe(
        tensors,
        config,
        f"probe directory {d}",
        expect_model_id=expect_model_id,
        expect_tokenizer_hash=expect_tokenizer_hash,
        expect_hidden_size=expect_hidden_size,
    )
    return probe, config


def checked_probe(
    tensors: dict[str, torch.Tensor],
    config: ProbeConfig,
    where: str,
    *,
    expect_model_id: str | None = None,
    expect_tokenizer_hash: str | None = None,
    expect_hidden_size: int | None = None,
    untrusted: bool = False,
) -> LinearProbe:
    """The probe in `tensors`, checked against its config and the model it will read.

    `untrusted` (an upload): the weights must be finite floats, and a config without a
    tokenizer hash is refused (once the model itself matched), so the tokenizer check
    cannot be skipped."""
    weight, bias = tensors.get("weight"), tensors.get("bias")
    if weight is None or bias is None or weight.ndim != 1 or bias.numel() != 1:
        raise UserError(f"{where}: {PROBE_FILE} must hold tensors 'weight' [H] and 'bias' [1]")
    if weight.shape[0] != config.hidden_size:
        raise UserError(
            f"{where} is inconsistent: config says hidden size {config.hidden_size} "
            f"but the weights have {weight.shape[0]}"
        )
    probe = LinearProbe.from_weights(weight, bias) if weight.dtype.is_floating_point else None
    if untrusted and (
        probe is None
        or not bias.dtype.is_floating_point
        or not all(bool(torch.isfinite(t).all()) for t in (probe.linear.weight, probe.linear.bias))
    ):
        raise UserError(f"{where}: the weights must be finite floating-point numbers")

    model_differs = expect_model_id is not None and expect_model_id != config.model_id
    size_differs = expect_hidden_size is not None and int(expect_hidden_size) != config.hidden_size
    if model_differs or size_differs:
        raise ModelMismatchError(
            f"probe was trained {_side(config.model_id, config.hidden_size, True)} "
            f"but the loaded model {_side(expect_model_id, expect_hidden_size, False)}"
        )
    if untrusted and config.tokenizer_hash is None:
        raise UserError(
            f"{where}: config.json lacks tokenizer_hash, so it cannot be checked against the loaded model's tokenizer"
        )
    if (
        expect_tokenizer_hash is not None
        and config.tokenizer_hash is not None
        and expect_tokenizer_hash != config.tokenizer_hash
    ):
        raise ModelMismatchError(
            f"probe was trained on model '{config.model_id}' with tokenizer {config.tokenizer_hash[:12]} "
            f"but the loaded model's tokenizer is {expect_tokenizer_hash[:12]}"
        )
    return probe if probe is not None else LinearProbe.from_weights(weight, bias)
