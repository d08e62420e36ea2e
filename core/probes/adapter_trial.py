"""Untrusted LoRA adapters are loaded first outside the server's process, and refused when broken.

`trial_load` runs PEFT on the adapter folder in a child process (`python -m
core.probes.adapter_trial`) against a skeleton of the model on PyTorch's `meta` device: the
same module names and shapes, no weights, no memory, so it is quick whatever the model's size.
The child reports PEFT's missing and unexpected keys; a child that does not answer within
`TRIAL_SECONDS` is killed and the adapter refused, so a hang in PEFT costs the server nothing.
Only an adapter that passed is loaded into the server (`load_lora_probe`), which checks the
keys again. `adapter_key_problems` is that one check: an adapter whose file lacks weights
for a module PEFT adapted (or has none at all), or holds weights for modules the model does not
have, is broken, not merely odd.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from core.base.errors import UserError

TRIAL_SECONDS = 120.0  # importing torch and PEFT in the child takes most of it
_ROOT = Path(__file__).resolve().parents[2]  # the repository: `-m core...` resolves from here


def _shown(key: str) -> str:
    text = key.removeprefix("base_model.model.")
    return repr(text if len(text) <= 80 else text[:77] + "...")


def adapter_key_problems(peft_model: Any, file_keys: set[str]) -> str | None:
    """What is wrong with the adapter weights a file holds for a PEFT model, or None.

    Expected keys are the adapter state dict PEFT would save for this model and config."""
    from peft import get_peft_model_state_dict

    expected = set(get_peft_model_state_dict(peft_model).keys())
    if not file_keys:
        return "its adapter file holds no weights"
    if not expected:
        return "its adapter config adapts no module of the model"
    unexpected = sorted(file_keys - expected)
    if unexpected:
        return f"its adapter file holds {len(unexpected)} weights the model has no place for (such as {_shown(unexpected[0])})"
    missing = sorted(expected - file_keys)
    if missing:
        return f"its adapter file lacks {len(missing)} of the weights its config needs (such as {_shown(missing[0])})"
    return None


def trial_load(model: Any, adapter_dir: Path, where: str, seconds: float = TRIAL_SECONDS) -> None:
    """Load the adapter in `adapter_dir` onto a weightless copy of `model` in a child process;
    UserError (one line) if PEFT refuses it, its keys do not fit, or the child does not finish."""
    request = json.dumps({"model_config": json.loads(model.config.to_json_string()), "adapter": str(adapter_dir)})
    try:
        done = subprocess.run(
            [sys.executable, "-m", "core.probes.adapter_trial"],
            cwd=_ROOT,
            input=request,
            capture_output=True,
            text=True,
            timeout=seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise UserError(f"{where}: loading its adapters did not finish within {seconds:g} s; refused") from None
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except ValueError:
        answer = {}
    if done.returncode != 0 or not isinstance(answer, dict) or "problem" not in answer:
        raise UserError(f"{where}: its adapters could not be loaded (the check ended with code {done.returncode})")
    if answer["problem"]:
        raise UserError(f"{where}: {str(answer['problem'])[:300]}")


def _trial(request: dict[str, Any]) -> str | None:
    import torch
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    settings = dict(request["model_config"])
    config = AutoConfig.for_model(settings.pop("model_type"), **settings)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    adapter = Path(request["adapter"])
    try:
        with safe_open(str(adapter / "adapter_model.safetensors"), framework="pt") as weights:
            keys = set(weights.keys())
    except Exception:
        return "its adapter_model.safetensors is not a readable safetensors file"
    try:
        peft_model = PeftModel.from_pretrained(skeleton, str(adapter), is_trainable=False)
    except Exception as exc:  # PEFT's refusals: a module it cannot adapt, shapes that do not fit
        return f"its adapters do not fit the model ({(str(exc).splitlines() or [''])[0][:160]})"
    return adapter_key_problems(peft_model, keys)


def main() -> int:
    """The child: read the request on stdin, print one JSON line {"problem": text or null}."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    request = json.loads(sys.stdin.read())
    print(json.dumps({"problem": _trial(request)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
