"""LoRA probes end to end below the pages: measure on a validation split, save, load, score.

A LoRA probe directory is a linear probe directory (`probe.safetensors` = the head,
`config.json` with the LoRA kind and its settings) plus `adapter/` in PEFT's own
format. Baselines (log-prob, entropy) come from the base model, as for linear probes, so
both kinds are measured against the same baselines on the same answers.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.base.errors import UserError
from core.base.progress import ProgressFn, report
from core.base.types import Generation
from core.engine.model import LoadedModel
from core.probes.adapter_schema import ADAPTER_CONFIG, ADAPTER_WEIGHTS, check_adapter_config
from core.probes.adapter_trial import adapter_key_problems, trial_load
from core.probes.config import ADAPTER_DIR, ProbeConfig
from core.probes.files import load_probe, save_probe
from core.probes.linear import LinearProbe
from core.probes.lora import CheckpointScorer, LoraResult, LoraSettings, lora_hidden
from core.probes.metrics import ItemScores, evaluate_items, level_metric
from core.probes.pipeline import PreparedItem, data_hash


@dataclass
class LoraTrainResult:
    result: LoraResult
    config: ProbeConfig
    metrics: dict[str, Any]
    n_train: int
    n_validation: int


def with_token_ids(item: PreparedItem) -> Generation:
    """The item's answer with the token ids its labels were computed on."""
    gen = copy.copy(item.generation)
    gen.extra = {**item.generation.extra, "tokens": {"ids": list(item.acts.trace.token_ids)}}
    return gen


def lora_item_scores(
    lm: LoadedModel,
    model: Any,
    head: LinearProbe,
    items: Sequence[PreparedItem],
    layer: int,
    *,
    progress: ProgressFn | None = None,
    counted: tuple[int, int] | None = None,
) -> list[ItemScores]:
    """The adapted model's scores of each item's tokens, with the base model's baselines.
    Reports "evaluate" per answer (`counted`: answers scored before these, and the total)."""
    before, total = counted if counted is not None else (0, len(items))
    out = []
    for n, item in enumerate(items):
        report(progress, "evaluate", before + n, total, "scoring answers")
        hidden = lora_hidden(lm, model, item.generation.conversation, layer, item.acts.trace.token_ids)
        out.append(
            ItemScores(
                labels=item.labels.labels,
                span_ids=item.labels.span_ids,
                span_labels=item.labels.span_labels,
                probe=np.asarray(head.predict(hidden), dtype=np.float64).reshape(-1),
                logprobs=np.asarray(item.acts.trace.logprobs, dtype=np.float64),
                entropies=np.asarray(item.acts.trace.entropies, dtype=np.float64),
            )
        )
    return out


def validation_scorer(lm: LoadedModel, items: Sequence[PreparedItem], layer: int) -> CheckpointScorer | None:
    """A checkpoint's span_max AUC on held-out answers (the headline metric); None without any."""
    if not items:
        return None
    auc = level_metric("span_max", "auc")

    def score(model: Any, head: LinearProbe) -> float | None:
        scores = lora_item_scores(lm, model, head, items, layer)
        if not all(s.probe is not None and np.isfinite(s.probe).all() for s in scores):
            return math.nan  # training diverged: this checkpoint can never be kept
        return auc(scores)

    return score


def measure_lora(
    lm: LoadedModel,
    result: LoraResult,
    train_items: Sequence[PreparedItem],
    val_items: Sequence[PreparedItem],
    layer: int,
    settings: LoraSettings,
    train_config: dict[str, Any],
    *,
    threshold: float = 0.5,
    progress: ProgressFn | None = None,
) -> LoraTrainResult:
    """A trained LoRA probe measured on the held-out side (the train side under `train`), and
    its config; `train_config` is what its starting head was fitted with (the CLI's `train`)."""
    scored = len(train_items) + len(val_items)
    train_metrics = evaluate_items(
        lora_item_scores(lm, result.model, result.head, train_items, layer, progress=progress, counted=(0, scored)),
        threshold,
    )
    if val_items:
        val_scores = lora_item_scores(
            lm, result.model, result.head, val_items, layer, progress=progress, counted=(len(train_items), scored)
        )
        metrics = evaluate_items(val_scores, threshold)
        metrics["split"] = "validation"
    else:
        metrics = dict(train_metrics)
        metrics["split"] = "train (no validation generations)"
    metrics.update(
        {
            "train": train_metrics,
            "layer": layer,
            "model": lm.model_id,
            "final_loss": result.history[-1]["loss"] if result.history else None,
        }
    )
    if result.checkpoints is not None:
        metrics["checkpoints"] = result.checkpoints
    config = ProbeConfig(
        model_id=lm.model_id,
        tokenizer_hash=lm.tokenizer_hash,
        layer=layer,
        hidden_size=lm.hidden_size,
        training_data_hash=data_hash(train_items),
        metrics=metrics,
        lora=settings.to_dict(),
        train_config=dict(train_config),
    )
    report(progress, "evaluate", scored, scored, "done")
    return LoraTrainResult(result, config, metrics, len(train_items), len(val_items))


def save_lora_probe(directory: str | Path, result: LoraResult, config: ProbeConfig) -> Path:
    """The head as a linear probe directory, then the adapters in PEFT's format under adapter/."""
    target = save_probe(directory, result.head, config)
    result.model.save_pretrained(str(target / ADAPTER_DIR))
    return target


def check_adapter_folder(lm: LoadedModel, directory: str | Path, layer: int, where: str) -> LoraSettings:
    """Admit an untrusted probe folder's adapter/ for a probe on block `layer` of `lm`.

    The config is checked against the strict schema (`core.probes.adapter_schema`) and
    replaced by its canonical form; the weights must be finite floating-point tensors; then
    PEFT loads them in a child process (`trial_load`). Returns the adapter's settings."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    adapter = Path(directory) / ADAPTER_DIR
    if not (adapter / ADAPTER_CONFIG).is_file() or not (adapter / ADAPTER_WEIGHTS).is_file():
        raise UserError(f"{where}: a LoRA probe needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}")
    checked = check_adapter_config((adapter / ADAPTER_CONFIG).read_bytes(), lm.model, lm.num_layers, layer, where)
    (adapter / ADAPTER_CONFIG).write_bytes(checked.to_bytes())
    try:
        tensors = load_file(str(adapter / ADAPTER_WEIGHTS))
    except (SafetensorError, ValueError, RuntimeError, TypeError, OverflowError, MemoryError, OSError):
        raise UserError(f"{where}: {ADAPTER_WEIGHTS} is not a readable safetensors file") from None
    if not all(t.dtype.is_floating_point and bool(t.isfinite().all()) for t in tensors.values()):
        raise UserError(f"{where}: the weights in {ADAPTER_WEIGHTS} must be finite floating-point numbers")
    problem = misplaced_weights(set(tensors), {name for name, _ in lm.model.named_modules() if name})
    if problem:
        raise UserError(f"{where}: {problem}")
    trial_load(lm.model, adapter, where)
    return checked.settings


def misplaced_weights(keys: set[str], modules: set[str]) -> str | None:
    """The first sign, without PEFT, that adapter weights do not belong to the model: none at
    all, or a name that is not `base_model.model.<a module of the model>.lora_A|lora_B.weight`."""
    if not keys:
        return f"its {ADAPTER_WEIGHTS} holds no weights"
    for key in sorted(keys):
        module, dot, tail = key.removeprefix("base_model.model.").rpartition(".lora_")
        if not (key.startswith("base_model.model.") and dot and tail in ("A.weight", "B.weight") and module in modules):
            shown = key if len(key) <= 80 else key[:77] + "..."
            return f"its {ADAPTER_WEIGHTS} holds weights for a module the model does not have ({shown!r})"
    return None


def load_lora_probe(
    lm: LoadedModel, directory: str | Path, where: str | None = None
) -> tuple[Any, LinearProbe, ProbeConfig]:
    """(adapted model, head, config), checked against `lm` like any probe; the shared model is not changed.

    Adapter weights PEFT would not place (missing or unexpected keys) are a refusal, not a warning."""
    from peft import PeftModel
    from safetensors import SafetensorError, safe_open

    where = where or f"LoRA probe {directory}"
    head, config = load_probe(
        directory,
        expect_model_id=lm.model_id,
        expect_tokenizer_hash=lm.tokenizer_hash,
        expect_hidden_size=lm.hidden_size,
    )
    adapter = Path(directory) / ADAPTER_DIR
    if not (adapter / ADAPTER_CONFIG).is_file():
        raise UserError(f"{where}: its adapter files are missing ({ADAPTER_DIR}/)")
    try:
        with safe_open(str(adapter / ADAPTER_WEIGHTS), framework="pt") as weights:
            keys = set(weights.keys())
        model = PeftModel.from_pretrained(copy.deepcopy(lm.model), str(adapter), is_trainable=False)
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise UserError(
            f"{where}: its adapters do not fit model '{lm.model_id}' ({(str(exc).splitlines() or [''])[0][:160]})"
        ) from None
    problem = adapter_key_problems(model, keys)
    if problem:
        raise UserError(f"{where}: {problem}")
    # Merged for inference: the same function (to float rounding) at the base model's speed.
    # Unmerged, PEFT's per-module adapter calls made decoding ~9x slower on 2 CPU cores.
    model = model.merge_and_unload()
    model.eval()
    return model, head, config
