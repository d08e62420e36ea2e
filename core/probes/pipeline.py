"""Generations -> hidden states and token labels -> trained, evaluated or swept probes.

The pure pipeline behind the CLI and the runs: each function takes a loaded model,
generations and settings and returns plain data; progress and cancellation go through
`core.base.progress`, so the same function serves a terminal, a page and a worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.base.errors import UserError
from core.base.progress import CancelToken, ProgressFn, check, report
from core.base.types import Generation, TokenTrace
from core.engine.activations import (
    GenerationActivations,
    extract_activations,
    generation_key,
)
from core.engine.bulk import GeneratedAnswer, generate_answers
from core.engine.model import LoadedModel
from core.probes.config import ProbeConfig
from core.probes.linear import QUICK_TRAIN, LinearProbe, TrainConfig, train_probe
from core.probes.metrics import ItemScores, evaluate_items
from core.probes.training_set import (
    build_training_set,
    split_by_generation,
    training_data_hash,
)
from core.text.tokens import TokenLabels, runs_over, token_labels


@dataclass
class PreparedItem:
    """A generation with its per-token data and token labels, ready to train or evaluate."""

    generation: Generation
    key: str
    acts: GenerationActivations
    labels: TokenLabels


def split_key(gen: Generation) -> str:
    """What the train/validation split hashes: the stable id when present, else the content."""
    return gen.id if gen.id else generation_key(gen)


def prepare(
    lm: LoadedModel,
    generations: Sequence[Generation],
    layers: Sequence[int],
    *,
    use_cache: bool = True,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> list[PreparedItem]:
    if not generations:
        raise UserError("no generations to work on")
    acts = extract_activations(lm, generations, layers, use_cache=use_cache, progress=progress, cancel=cancel)
    return [
        PreparedItem(gen, split_key(gen), a, token_labels(a.trace.offsets, gen.spans))
        for gen, a in zip(generations, acts)
    ]


def item_scores(items: Sequence[PreparedItem], probe: LinearProbe | None, layer: int) -> list[ItemScores]:
    out = []
    for item in items:
        scores = None
        if probe is not None:
            scores = np.asarray(probe.predict(item.acts.hidden[layer]), dtype=np.float64).reshape(-1)
        out.append(
            ItemScores(
                labels=item.labels.labels,
                span_ids=item.labels.span_ids,
                span_labels=item.labels.span_labels,
                probe=scores,
                logprobs=np.asarray(item.acts.trace.logprobs, dtype=np.float64),
                entropies=np.asarray(item.acts.trace.entropies, dtype=np.float64),
            )
        )
    return out


def training_examples(items: Sequence[PreparedItem], layer: int):
    for item in items:
        yield (item.acts.hidden[layer], item.labels.labels, item.labels.span_ids, item.labels.span_labels, item.key)


def labels_hash(generations: Sequence[Generation]) -> str:
    """The data snapshot hash a version stores: answers (by split key) and their labels, in any order."""
    return training_data_hash((split_key(g), [(s.start, s.end, s.label) for s in g.spans]) for g in generations)


def data_hash(items: Sequence[PreparedItem]) -> str:
    return labels_hash([item.generation for item in items])  # item.key is split_key(item.generation)


@dataclass
class TrainResult:
    probe: LinearProbe
    config: ProbeConfig
    metrics: dict[str, Any]
    history: list[dict] = field(default_factory=list)
    n_train: int = 0
    n_validation: int = 0


def split_items(items: Sequence[PreparedItem], val_fraction: float) -> tuple[list[PreparedItem], list[PreparedItem]]:
    is_val = split_by_generation([i.key for i in items], val_fraction)
    train = [i for i, v in zip(items, is_val) if not v]
    val = [i for i, v in zip(items, is_val) if v]
    if not train:
        raise UserError("every generation fell into the validation split: lower --val-fraction or add data")
    return train, val


def train_on_items(
    lm: LoadedModel,
    items: Sequence[PreparedItem],
    layer: int,
    *,
    val_fraction: float = 0.2,
    train_config: TrainConfig | None = None,
    threshold: float = 0.5,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    version: int | str = 1,
) -> TrainResult:
    """Split by generation, train on one side, report metrics on the held-out side."""
    train_items, val_items = split_items(items, val_fraction)
    config = train_config or TrainConfig()
    data = build_training_set(training_examples(train_items, layer), span_weight=config.span_weight)
    probe, history = train_probe(data, config, progress=progress, cancel=cancel)
    train_metrics = evaluate_items(item_scores(train_items, probe, layer), threshold)
    if val_items:
        metrics = evaluate_items(item_scores(val_items, probe, layer), threshold)
        metrics["split"] = "validation"
    else:
        metrics = dict(train_metrics)
        metrics["split"] = "train (no validation generations)"
    metrics["train"] = train_metrics
    metrics["layer"] = layer
    metrics["model"] = lm.model_id
    probe_config = ProbeConfig(
        model_id=lm.model_id,
        tokenizer_hash=lm.tokenizer_hash,
        layer=layer,
        hidden_size=lm.hidden_size,
        training_data_hash=data_hash(train_items),
        metrics=metrics,
        version=version,
        train_config={**config.to_dict(), "val_fraction": val_fraction},
    )
    return TrainResult(probe, probe_config, metrics, history, len(train_items), len(val_items))


def train_from_generations(
    lm: LoadedModel,
    generations: Sequence[Generation],
    *,
    layer: int | None = None,
    val_fraction: float = 0.2,
    train_config: TrainConfig | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    version: int | str = 1,
) -> TrainResult:
    layer = lm.check_layer(layer if layer is not None else lm.default_layer)
    items = prepare(lm, generations, [layer], progress=progress, cancel=cancel)
    return train_on_items(
        lm,
        items,
        layer,
        val_fraction=val_fraction,
        train_config=train_config,
        progress=progress,
        cancel=cancel,
        version=version,
    )


def evaluate_probe(
    lm: LoadedModel,
    generations: Sequence[Generation],
    probe: LinearProbe,
    probe_config: ProbeConfig,
    *,
    threshold: float = 0.5,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    layer = lm.check_layer(probe_config.layer)
    items = prepare(lm, generations, [layer], progress=progress, cancel=cancel)
    metrics = evaluate_items(item_scores(items, probe, layer), threshold)
    metrics["layer"] = layer
    metrics["model"] = lm.model_id
    return metrics


def score_generations(
    lm: LoadedModel,
    generations: Sequence[Generation],
    probe: LinearProbe,
    probe_config: ProbeConfig,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> list[TokenTrace]:
    """Per-token probe scores of each generation (teacher-forced, full precision)."""
    layer = lm.check_layer(probe_config.layer)
    acts = extract_activations(lm, generations, [layer], use_cache=False, progress=progress, cancel=cancel)
    traces = []
    for a in acts:
        scores = np.asarray(probe.predict(a.hidden[layer]), dtype=np.float64).reshape(-1)
        traces.append(a.trace.with_scores(scores.tolist()))
    return traces


def train_per_layer(
    train_items: Sequence[PreparedItem],
    eval_items: Sequence[PreparedItem],
    layers: Sequence[int],
    config: TrainConfig = QUICK_TRAIN,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> tuple[dict[int, LinearProbe], dict[int, list[ItemScores]]]:
    """A quick probe per layer on the train items, and its scores on the evaluation items:
    the layer sweep of the CLI and of the Inspect page."""
    probes: dict[int, LinearProbe] = {}
    scores: dict[int, list[ItemScores]] = {}
    for n, layer in enumerate(layers):
        check(cancel)
        report(progress, "layers", n, len(layers), f"layer {layer}")
        data = build_training_set(training_examples(train_items, layer), span_weight=config.span_weight)
        probes[layer], _history = train_probe(data, config, cancel=cancel)
        scores[layer] = item_scores(eval_items, probes[layer], layer)
    report(progress, "layers", len(layers), len(layers), "done")
    return probes, scores


def best_layer(rows: Sequence[dict[str, Any]]) -> int | None:
    """The layer with the best span_max AUC (token AUC where no span is scored)."""
    key = "span_max_auc" if any(r.get("span_max_auc") is not None for r in rows) else "token_auc"
    ranked = [r for r in rows if r.get(key) is not None]
    return max(ranked, key=lambda r: r[key])["layer"] if ranked else None


def layer_sweep(
    lm: LoadedModel,
    generations: Sequence[Generation],
    *,
    layers: Sequence[int] | None = None,
    val_fraction: float = 0.2,
    train_config: TrainConfig | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """Train a quick probe per layer on one extraction pass; AUC per layer on held-out data."""
    chosen = sorted({lm.check_layer(x) for x in (layers if layers is not None else range(lm.num_layers))})
    items = prepare(lm, generations, chosen, progress=progress, cancel=cancel)
    train, val = split_items(items, val_fraction)
    split = "validation" if val else "train (no validation generations)"
    _probes, per_layer = train_per_layer(
        train, val or train, chosen, train_config or QUICK_TRAIN, progress=progress, cancel=cancel
    )
    rows = []
    for layer in chosen:
        metrics = evaluate_items(per_layer[layer])
        rows.append(
            {
                "layer": layer,
                "token_auc": metrics["token"]["auc"],
                "span_max_auc": metrics["span_max"]["auc"],
                "span_max_recall_at_fpr_0.1": metrics["span_max"]["recall_at_fpr_0.1"],
                "split": split,
            }
        )
    return {"model": lm.model_id, "default_layer": lm.default_layer, "best_layer": best_layer(rows), "layers": rows}


def spans_from_scores(
    offsets: Sequence[tuple[int, int]], scores: Sequence[float], threshold: float
) -> list[tuple[int, int, float]]:
    """Predicted spans: runs of consecutive tokens scoring at or above the threshold (`runs_over`),
    each as (first token's start, last token's end, the run's highest score)."""
    return [
        (offsets[first][0], offsets[last - 1][1], float(max(scores[first:last])))
        for first, last in runs_over(scores, threshold)
    ]


__all__ = [
    "GeneratedAnswer",
    "PreparedItem",
    "TrainResult",
    "evaluate_probe",
    "generate_answers",
    "layer_sweep",
    "prepare",
    "score_generations",
    "spans_from_scores",
    "train_from_generations",
    "train_on_items",
]
