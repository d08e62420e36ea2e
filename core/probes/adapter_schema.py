"""A LoRA probe's PEFT `adapter_config.json`, checked against a strict schema before PEFT sees it.

The file is untrusted (our zips and the paper's folders alike). PEFT reads some of its values
as regular expressions (`target_modules` as a string, the keys of `rank_pattern` and
`alpha_pattern`, `layers_pattern`, `exclude_modules`) and matches them while holding the GIL,
so one pathological pattern froze the whole server; it allocates `r` columns per adapted
module, so `r = 4194304` asked for gigabytes. Here:

- only known keys are accepted, each of its type; features we do not load (DoRA, per-module
  patterns, layer replication, extra trained modules, other initialisations) are refused;
- `r`, `lora_alpha` and `lora_dropout` must satisfy the bounds training uses (`LoraSettings`),
  and the adapted layers must lie within the model and end at or below the probe's layer;
- `target_modules` is a list of plain module names the model has, or a regular expression
  that compiles and matches within `PROBELENS_ADAPTER_REGEX_SECONDS` (default 5 s) in a separate process (a hang there is
  killed); the expression is then replaced by the module names it matched, so PEFT never
  runs a pattern from the file;
- what PEFT reads is the canonical config written here, never the uploaded bytes.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from core.base import settings
from core.base.errors import UserError
from core.probes.config import parse_config_json
from core.probes.lora import LoraSettings

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
MAX_PATTERN = 500
MAX_NAMES = 64
MAX_TEXT = 500
_PLAIN = re.compile(r"[A-Za-z0-9_]{1,100}(\.[A-Za-z0-9_]{1,100}){0,15}")
ALL_LINEAR = "all-linear"  # PEFT's shortcut for every linear layer but the output head


def _shown(value: Any) -> str:
    """A value for a message: short, one line."""
    text = json.dumps(value, ensure_ascii=True) if isinstance(value, (str, int, float, bool)) else type(value).__name__
    return text if len(text) <= 40 else text[:36] + "...'"


def _fail(where: str, key: str, want: str, value: Any) -> UserError:
    return UserError(f"{where}: adapter_config.json's {key} must be {want}, not {_shown(value)}")


def _bool(where: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, key, "true or false", value)
    return value


def _false(where: str, key: str, value: Any) -> bool:
    if value not in (None, False):
        raise _fail(where, key, "false (not supported here)", value)
    return False


def _empty(where: str, key: str, value: Any) -> None:
    if value not in (None, {}, []):
        raise _fail(where, key, "empty (not supported here)", value)


def _text(where: str, key: str, value: Any) -> str | None:
    if value is not None and not (isinstance(value, str) and len(value) <= MAX_TEXT and value.isprintable()):
        raise _fail(where, key, f"text of at most {MAX_TEXT} characters or null", value)
    return value


def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(where, key, "a finite number", value)
    return value


def _plain_names(where: str, key: str, value: Any) -> list[str]:
    if not (isinstance(value, list) and 0 < len(value) <= MAX_NAMES):
        raise _fail(where, key, f"a list of 1 to {MAX_NAMES} module names", value)
    for name in value:
        if not (isinstance(name, str) and _PLAIN.fullmatch(name)):
            raise _fail(where, key, "plain module names (letters, digits, _ and dots)", name)
    return list(value)


def _informational(where: str, key: str, value: Any) -> None:
    """Keys PEFT writes for its own records (versions, where the base model came from): checked, not kept."""
    if isinstance(value, dict):
        if len(value) > 8 or not all(isinstance(k, str) and _text(where, key, v) is not None for k, v in value.items()):
            raise _fail(where, key, "a small object of texts", value)
    elif not isinstance(value, int) or isinstance(value, bool):
        _text(where, key, value)


# Keys PEFT's LoraConfig writes that must hold their "off" value: a feature we do not load.
_OFF: dict[str, Callable[[str, str, Any], Any]] = {
    **dict.fromkeys(("use_dora", "lora_bias", "use_qalora", "use_bdlora"), _false),
    **dict.fromkeys(
        (
            "rank_pattern",
            "alpha_pattern",
            "modules_to_save",
            "layer_replication",
            "loftq_config",
            "megatron_config",
            "eva_config",
            "corda_config",
            "lora_ga_config",
            "monteclora_config",
            "kasa_config",
            "arrow_config",
            "velora_config",
            "alora_invocation_tokens",
            "trainable_token_indices",
            "target_parameters",
        ),
        _empty,
    ),
    **dict.fromkeys(
        (
            "peft_version",
            "base_model_name_or_path",
            "revision",
            "megatron_core",
            "auto_mapping",
            "qalora_group_size",
        ),
        _informational,
    ),
    **dict.fromkeys(("ensure_weight_tying", "inference_mode", "use_rslora", "fan_in_fan_out"), _bool),
}
_MAIN = (
    "peft_type",
    "task_type",
    "r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "exclude_modules",
    "layers_to_transform",
    "layers_pattern",
    "bias",
    "init_lora_weights",
)
KNOWN_KEYS = frozenset((*_MAIN, *_OFF))


@dataclass
class CheckedAdapter:
    """A checked adapter config: the settings it trains with and the canonical JSON PEFT reads."""

    settings: LoraSettings
    canonical: dict[str, Any]

    def to_bytes(self) -> bytes:
        return (json.dumps(self.canonical, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _module_names(model: Any) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def _suffixes(names: Iterable[str]) -> set[str]:
    """Every dotted tail of every module name: what a plain entry of `target_modules` may name."""
    out: set[str] = set()
    for name in names:
        parts = name.split(".")
        out.update(".".join(parts[i:]) for i in range(len(parts)))
    return out


_REGEX_CHILD = (
    "import json, re, sys\n"
    "d = json.load(sys.stdin)\n"
    "p = re.compile(d['pattern'])\n"
    "print(json.dumps([n for n in d['names'] if p.fullmatch(n)]))\n"
)


def regex_matches(pattern: str, names: list[str], where: str, seconds: float | None = None) -> list[str]:
    """The names `pattern` fully matches, found in a separate bare Python process killed after
    `seconds` (default: the setting): a catastrophic pattern holds the GIL, so no thread here
    could stop it."""
    if seconds is None:
        seconds = settings.adapter_regex_seconds()
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _REGEX_CHILD],
            input=json.dumps({"pattern": pattern, "names": names}),
            capture_output=True,
            text=True,
            timeout=seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise UserError(
            f"{where}: adapter_config.json's target_modules pattern did not finish matching the model's "
            f"module names within {seconds:g} s; refused"
        ) from None
    if done.returncode != 0:
        raise UserError(f"{where}: adapter_config.json's target_modules is not a valid regular expression")
    return list(json.loads(done.stdout))


def _targets(where: str, value: Any, model: Any) -> list[str] | str:
    names = _module_names(model)
    if value == ALL_LINEAR:
        return value
    if isinstance(value, str):
        if not value or len(value) > MAX_PATTERN or not value.isprintable():
            raise _fail(where, "target_modules", f"a pattern of 1 to {MAX_PATTERN} printable characters", value)
        matched = regex_matches(value, names, where)
        if not matched:
            raise UserError(f"{where}: adapter_config.json's target_modules pattern matches no module of the model")
        return matched
    entries = _plain_names(where, "target_modules", value)
    known = _suffixes(names)
    unknown = [name for name in entries if name not in known]
    if unknown:
        raise UserError(f"{where}: adapter_config.json's target_modules names modules the model lacks: {unknown[0]}")
    return sorted(set(entries))


def _layers(where: str, value: Any, num_layers: int) -> list[int] | None:
    if value is None:
        return None
    layers = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not (
        isinstance(layers, list)
        and 0 < len(layers) <= num_layers
        and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < num_layers for x in layers)
    ):
        raise _fail(where, "layers_to_transform", f"layer numbers from 0 to {num_layers - 1}", value)
    return sorted(set(layers))


def check_adapter_config(data: bytes, model: Any, num_layers: int, layer: int, where: str) -> CheckedAdapter:
    """Check untrusted adapter_config.json bytes for a probe on block `layer` of `model`.

    Returns the LoRA settings and the canonical config; raises one UserError otherwise."""
    raw = parse_config_json(data, f"{where}: {ADAPTER_CONFIG}")
    if not isinstance(raw, dict):
        raise UserError(f"{where}: {ADAPTER_CONFIG} must be a JSON object")
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise UserError(f"{where}: {ADAPTER_CONFIG} holds an unknown key {_shown(unknown[0])}")
    for key, check in _OFF.items():
        if key in raw:
            check(where, key, raw[key])
    if raw.get("peft_type", "LORA") != "LORA":
        raise UserError(f"{where}: {ADAPTER_CONFIG} is not a PEFT LoRA config")
    if raw.get("task_type") not in (None, "CAUSAL_LM"):
        raise _fail(where, "task_type", '"CAUSAL_LM" or null', raw.get("task_type"))
    for key in ("r", "lora_alpha", "target_modules"):
        if key not in raw:
            raise UserError(f"{where}: {ADAPTER_CONFIG} lacks {key}")
    rank = raw["r"]
    if isinstance(rank, bool) or not isinstance(rank, int):
        raise _fail(where, "r", "a whole number", rank)
    alpha = _number(where, "lora_alpha", raw["lora_alpha"])
    dropout = _number(where, "lora_dropout", raw.get("lora_dropout", 0.0))
    layers = _layers(where, raw.get("layers_to_transform"), num_layers)
    settings = LoraSettings(rank=rank, alpha=alpha, dropout=dropout)  # type: ignore[arg-type]
    if layers is not None:
        settings.first_layer, settings.last_layer = layers[0], layers[-1]
    try:
        settings.validate(num_layers, layer)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    if raw.get("bias", "none") != "none":
        raise _fail(where, "bias", '"none"', raw.get("bias"))
    init = _bool(where, "init_lora_weights", raw.get("init_lora_weights", True))
    pattern = raw.get("layers_pattern")
    if pattern is not None and not (isinstance(pattern, str) and _PLAIN.fullmatch(pattern)):
        raise _fail(where, "layers_pattern", "a plain module name or null", pattern)
    exclude = raw.get("exclude_modules")
    canonical: dict[str, Any] = {
        "peft_type": "LORA",
        "task_type": raw.get("task_type"),
        "r": rank,
        "lora_alpha": alpha,
        "lora_dropout": dropout,
        "target_modules": _targets(where, raw["target_modules"], model),
        "exclude_modules": None if exclude in (None, []) else _plain_names(where, "exclude_modules", exclude),
        "layers_to_transform": layers,
        "layers_pattern": pattern,
        "bias": "none",
        "init_lora_weights": init,
        "use_rslora": bool(raw.get("use_rslora", False)),
        "fan_in_fan_out": bool(raw.get("fan_in_fan_out", False)),
        "inference_mode": True,
    }
    return CheckedAdapter(settings, canonical)
