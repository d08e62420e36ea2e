"""Probes written by the paper's public code: `probe_head.bin` + `probe_config.json` (+ PEFT adapter).

The reference code saves its value head with `torch.save(nn.Linear(H, 1).state_dict())`
(`weight` [1, H], `bias` [1]) and a JSON config with `layer_idx` and `hidden_size`; a LoRA
probe adds PEFT's `adapter_config.json` and adapter weights. Everything here is untrusted:
the state dict is read with `torch.load(weights_only=True)` (tensors and plain containers
only, never arbitrary objects), every size is checked, and the files are read from a folder
or from the members of a zip (never extracted to paths the archive names).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.base.errors import UserError
from core.probes.config import MAX_HIDDEN_SIZE, MAX_LAYER, parse_config_json
from core.probes.linear import LinearProbe
from core.probes.lora import LoraSettings

HEAD_FILE = "probe_head.bin"
CONFIG_FILE = "probe_config.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
MAX_HEAD_BYTES = 64 * 1024 * 1024
MAX_CONFIG_BYTES = 1024 * 1024
LAST_LAYER = -1  # layer_idx -1: Python's last layer, which the paper's own loader accepts


@dataclass
class PaperProbe:
    """A paper-format probe, checked: the head as our LinearProbe, and where it reads."""

    probe: LinearProbe
    layer: int  # as its config says: a block number, or -1 for the last block (`resolved_layer`)
    hidden_size: int
    target_layer_name: str | None
    has_adapter: bool

    def resolved_layer(self, num_layers: int) -> int:
        """The block number on a model with `num_layers` blocks (-1: the last one)."""
        return num_layers - 1 if self.layer == LAST_LAYER else self.layer


def is_paper_zip(data: bytes) -> bool:
    """Whether a zip holds the paper's head file (so an upload is read as a paper probe)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return any(info.filename.rsplit("/", 1)[-1] == HEAD_FILE for info in archive.infolist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError):
        return False


def _files_from_zip(data: bytes) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError):
        raise UserError(
            "not a paper probe: expected a folder or a zip holding probe_head.bin and probe_config.json"
        ) from None
    wanted = {HEAD_FILE, CONFIG_FILE, *ADAPTER_FILES}
    found: dict[str, bytes] = {}
    with archive:
        for info in archive.infolist():
            name = info.filename.rsplit("/", 1)[-1]  # the zip of a folder keeps the folder's name in front
            if name in wanted and not info.is_dir():
                if name in found:
                    raise UserError(f"not a paper probe: the zip holds {name} twice")
                limit = MAX_CONFIG_BYTES if name.endswith(".json") else MAX_HEAD_BYTES
                if info.file_size > limit:
                    raise UserError(f"paper probe: {name} is larger than {limit // (1024 * 1024)} MB")
                found[name] = archive.read(info)[: limit + 1]
    return found


def _files_from_folder(folder: Path) -> dict[str, bytes]:
    if not folder.is_dir():
        raise UserError(f"paper probe folder not found: {folder}")
    found: dict[str, bytes] = {}
    for name in (HEAD_FILE, CONFIG_FILE, *ADAPTER_FILES):
        path = folder / name
        if path.is_file():
            limit = MAX_CONFIG_BYTES if name.endswith(".json") else MAX_HEAD_BYTES
            if path.stat().st_size > limit:
                raise UserError(f"paper probe: {name} is larger than {limit // (1024 * 1024)} MB")
            found[name] = path.read_bytes()
    return found


def read_paper_probe(source: str | Path | bytes) -> tuple[PaperProbe, dict[str, bytes]]:
    """Parse and check a paper-format probe (a folder path or zip bytes); returns it and its raw files."""
    files = _files_from_zip(source) if isinstance(source, bytes) else _files_from_folder(Path(source))
    missing = [name for name in (HEAD_FILE, CONFIG_FILE) if name not in files]
    if missing:
        raise UserError(f"not a paper probe: {' and '.join(missing)} missing")
    config = parse_config_json(files[CONFIG_FILE], f"paper probe: {CONFIG_FILE}")
    if not isinstance(config, dict):
        raise UserError(f"paper probe: {CONFIG_FILE} must be a JSON object")
    layer, hidden = config.get("layer_idx"), config.get("hidden_size")
    if not (isinstance(layer, int) and not isinstance(layer, bool) and LAST_LAYER <= layer < MAX_LAYER):
        if isinstance(layer, int) and not isinstance(layer, bool) and layer < 0:
            raise UserError(
                f"paper probe: {CONFIG_FILE} has layer_idx {layer}; of the negative values only -1 (the last "
                "block, as the paper's loader reads it) is accepted, because a probe's layer is a block number "
                "and which block another value counts back to depends on the model it was trained on: "
                "write the block number (0 = the first block) instead"
            )
        raise UserError(f"paper probe: {CONFIG_FILE} needs an integer layer_idx, got {layer!r}"[:200])
    if not (isinstance(hidden, int) and not isinstance(hidden, bool) and 0 < hidden <= MAX_HIDDEN_SIZE):
        raise UserError(f"paper probe: {CONFIG_FILE} needs a positive integer hidden_size, got {hidden!r}"[:200])
    name = config.get("target_layer_name")
    state = _load_state_dict(files[HEAD_FILE])
    weight, bias = state.get("weight"), state.get("bias")
    if not (
        isinstance(weight, torch.Tensor)
        and isinstance(bias, torch.Tensor)
        and tuple(weight.shape) == (1, hidden)
        and bias.numel() == 1
    ):
        raise UserError(
            f"paper probe: {HEAD_FILE} must hold 'weight' [1, {hidden}] and 'bias' [1] "
            "(the state dict of nn.Linear(hidden_size, 1))"
        )
    if not (
        weight.dtype.is_floating_point
        and bias.dtype.is_floating_point
        and bool(torch.isfinite(weight).all())
        and bool(torch.isfinite(bias).all())
    ):
        raise UserError(f"paper probe: the weights in {HEAD_FILE} must be finite floating-point numbers")
    probe = LinearProbe.from_weights(weight.reshape(-1).float(), bias.reshape(1).float())
    has_adapter = "adapter_config.json" in files
    return PaperProbe(probe, layer, hidden, name if isinstance(name, str) else None, has_adapter), files


def _load_state_dict(data: bytes) -> dict[str, Any]:
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:
        raise UserError(
            f"paper probe: {HEAD_FILE} is not a readable PyTorch state dict (only tensors are accepted)"
        ) from None
    if not isinstance(state, dict):
        raise UserError(f"paper probe: {HEAD_FILE} must hold a state dict")
    return state


def require_safetensors_adapter(files: dict[str, bytes]) -> None:
    """A paper probe's adapter weights are read from safetensors only (the .bin is a pickle)."""
    if "adapter_model.safetensors" not in files:
        raise UserError(
            "paper probe: its LoRA adapters must be in adapter_model.safetensors "
            "(adapter_model.bin is a pickle and is not read)"
        )


def paper_lora_settings(settings: LoraSettings) -> dict[str, Any]:
    """Our config's `lora` record of a paper adapter, from its checked settings
    (`core.probes.adapter_schema.check_adapter_config`: the same bounds as training)."""
    out: dict[str, Any] = {"rank": settings.rank, "alpha": settings.alpha, "dropout": settings.dropout}
    if settings.last_layer is not None:
        out.update({"first_layer": settings.first_layer, "last_layer": settings.last_layer})
    return out
