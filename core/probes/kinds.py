"""Probe kinds: what differs between a linear probe, a LoRA probe and any kind added later.

One Protocol (`ProbeKind`) says what a kind does: train, save its files, check an upload's
files, prepare the model it reads once loaded, score hidden states, describe itself. One
table (`KINDS`) maps each kind's name (the `kind` of its config.json) to its implementation.
Everything above (retrain, the registry, re-scoring, batch and live generation, the CLI) asks
the table instead of comparing kind names, and passes a loaded probe whole (`LoadedProbe`).

Adding a kind: implement the Protocol (subclassing `LinearKind` when the head reads block L
as a linear probe does), then `register_kind(MyKind())`; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from core.base.errors import UserError
from core.base.progress import CancelToken, ProgressFn, as_stage, report
from core.base.types import Generation, TokenTrace
from core.engine.activations import extract_activations
from core.engine.model import LoadedModel
from core.probes.config import ProbeConfig
from core.probes.files import load_probe, save_probe
from core.probes.linear import LinearProbe, TrainConfig, train_probe
from core.probes.lora import LoraSettings, lora_hidden, train_lora_probe
from core.probes.lora_pipeline import (
    check_adapter_folder,
    load_lora_probe,
    measure_lora,
    save_lora_probe,
    validation_scorer,
    with_token_ids,
)
from core.probes.metrics import ItemScores, evaluate_items
from core.probes.pipeline import PreparedItem, prepare, split_items, train_from_generations, training_examples
from core.probes.training_set import build_training_set


@dataclass
class TrainOptions:
    """What a person sets for training, for any kind; `extra` holds a kind's own settings
    (LoRA: rank, first_layer, last_layer, kl_weight), which the kind reads and checks."""

    lr: float = 1e-3
    epochs: int | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def head_config(self) -> TrainConfig:
        return TrainConfig(lr=float(self.lr), epochs=self.epochs, seed=int(self.seed))


@dataclass
class TrainedProbe:
    """A freshly trained probe before it has files: what `ProbeKind.save` writes."""

    head: LinearProbe
    model: Any | None = None  # the model the head reads (None: the base model)
    history: list[dict[str, float]] = field(default_factory=list)
    state: Any = None  # the kind's own training result, for saving (LoRA: its LoraResult)
    metrics: dict[str, Any] = field(default_factory=dict)  # what training adds to the version's metrics


@dataclass
class TrainReport:
    """Training with a held-out split (the CLI's `train`): the probe, its config and metrics."""

    trained: TrainedProbe
    config: ProbeConfig
    metrics: dict[str, Any]
    n_train: int
    n_validation: int


class ProbeKind(Protocol):
    """What a probe kind does; one implementation per `kind` name, registered in `KINDS`."""

    name: str  # the `kind` in config.json
    noun: str  # how messages name a probe of this kind ("probe", "LoRA probe")
    description: str  # one line for choosers
    extra_files: tuple[str, ...]  # zip members beyond config.json and probe.safetensors
    adapts_model: bool  # whether it reads a model of its own (`prepare` returns one), not the base model's states

    def check_options(self, options: TrainOptions) -> None:
        """Refuse bad settings before a run starts (UserError), without a model."""

    def config_fields(self, options: TrainOptions) -> dict[str, Any]:
        """What this kind adds to a ProbeConfig for these settings (besides `kind`)."""

    def head_options(self, options: TrainOptions) -> TrainOptions:
        """The settings its linear head is fitted with (a version's `train_config` records them)."""

    def train(
        self,
        lm: LoadedModel,
        items: Sequence[PreparedItem],
        layer: int,
        options: TrainOptions,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
        validation: Sequence[PreparedItem] = (),
    ) -> TrainedProbe:
        """Train on prepared answers (cached base-model states of block `layer`, labels);
        `validation` (held-out answers) may choose among checkpoints, never train."""

    def train_from_generations(
        self,
        lm: LoadedModel,
        generations: Sequence[Generation],
        layer: int | None,
        val_fraction: float,
        options: TrainOptions,
        progress: ProgressFn | None = None,
    ) -> TrainReport:
        """Split by answer, train, measure on the held-out side (the CLI's `train`)."""

    def save(self, directory: str | Path, trained: TrainedProbe, config: ProbeConfig) -> Path:
        """Write the probe's files into `directory`."""

    def check_files(self, extra: Collection[str], where: str) -> None:
        """Refuse an upload whose extra members (beyond head and config) do not fit this kind."""

    def prepare(self, lm: LoadedModel, directory: Path, head: LinearProbe, config: ProbeConfig) -> Any | None:
        """The model the probe reads, once per load (LoRA: a merged copy); None: the base model."""

    def admit(self, lm: LoadedModel, directory: Path, head: LinearProbe, config: ProbeConfig, where: str) -> Any | None:
        """`prepare` for untrusted files (an upload, an import), after the kind's own checks of them."""

    def score(self, head: LinearProbe, hidden: Any) -> Any:
        """Scores in [0, 1] of hidden states [..., H] (numpy in, numpy out; a tensor in, a tensor out)."""

    def describe(self, config: ProbeConfig) -> str:
        """One line naming the probe for people."""


class LinearKind:
    """The head alone on the base model's block L (the paper's linear probe)."""

    name = "linear"
    noun = "probe"
    description = "Linear (the head alone, on cached hidden states)"
    extra_files: tuple[str, ...] = ()
    adapts_model = False

    def check_options(self, options: TrainOptions) -> None:
        return None

    def config_fields(self, options: TrainOptions) -> dict[str, Any]:
        return {}

    def head_options(self, options: TrainOptions) -> TrainOptions:
        return options

    def train(self, lm, items, layer, options, *, progress=None, cancel=None, validation=()) -> TrainedProbe:
        config = options.head_config()
        data = build_training_set(training_examples(items, layer), span_weight=config.span_weight)
        head, history = train_probe(data, config, progress=progress, cancel=cancel)
        return TrainedProbe(head, None, history)

    def train_from_generations(self, lm, generations, layer, val_fraction, options, progress=None) -> TrainReport:
        result = train_from_generations(
            lm,
            generations,
            layer=layer,
            val_fraction=val_fraction,
            train_config=options.head_config(),
            progress=progress,
        )
        result.config.kind = self.name
        return TrainReport(
            TrainedProbe(result.probe, None, result.history),
            result.config,
            result.metrics,
            result.n_train,
            result.n_validation,
        )

    def save(self, directory, trained, config) -> Path:
        return save_probe(directory, trained.head, config)

    def check_files(self, extra: Collection[str], where: str) -> None:
        if extra:
            raise UserError(f"{where}: {', '.join(sorted(extra))} in a probe whose config is of kind '{self.name}'")

    def prepare(self, lm, directory, head, config) -> Any | None:
        return None

    def admit(self, lm, directory, head, config, where) -> Any | None:
        return self.prepare(lm, directory, head, config)

    def score(self, head: LinearProbe, hidden: Any) -> Any:
        return head.predict(hidden)

    def describe(self, config: ProbeConfig) -> str:
        return f"{self.name} probe on layer {config.layer}"


def _whole_or_none(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"checkpoint interval must be a whole number of steps, got {value!r}")
    return value


class LoraKind(LinearKind):
    """LoRA adapters on blocks first..L trained with the head; loaded as a merged copy of the model."""

    name = "lora"
    noun = "LoRA probe"
    description = "LoRA (adapters on blocks 0..layer trained with the head)"
    extra_files = ("adapter_config.json", "adapter_model.safetensors")
    adapts_model = True

    def settings(self, options: TrainOptions) -> LoraSettings:
        extra = options.extra
        return LoraSettings(
            rank=int(extra.get("rank", 16)),
            first_layer=int(extra.get("first_layer", 0)),
            last_layer=extra.get("last_layer"),
            kl_weight=float(extra.get("kl_weight", 10.0)),
            checkpoint_every=_whole_or_none(extra.get("checkpoint_every")),
            epochs=int(options.epochs or 1),
            seed=int(options.seed),
        )

    def check_options(self, options: TrainOptions) -> None:
        self.settings(options).check_values()  # the layer range needs the model: training checks it

    def config_fields(self, options: TrainOptions) -> dict[str, Any]:
        return {"lora": self.settings(options).to_dict()}

    def head_options(self, options: TrainOptions) -> TrainOptions:
        """A LoRA run's epochs count its passes of the model over the answers, not the head's:
        its starting head is the linear version a linear run with the same learning rate and
        seed and automatic epochs fits, so checkpoint 0 is that version and the kept checkpoint
        never scores below it on the validation answers."""
        return replace(options, epochs=None)

    def train(self, lm, items, layer, options, *, progress=None, cancel=None, validation=()) -> TrainedProbe:
        # adapters + head on whole answers: the model runs forward and backward (no activation cache)
        settings = self.settings(options)
        settings.validate(lm.num_layers, layer)
        # checkpoint 0: the linear kind's own training on the same cached states (seconds),
        # reported as "head" so the bar moves again through the LoRA steps
        start = LinearKind.train(
            self, lm, items, layer, self.head_options(options), progress=as_stage(progress, "head"), cancel=cancel
        ).head
        result = train_lora_probe(
            lm,
            [with_token_ids(i) for i in items],
            layer,
            settings,
            progress=progress,
            cancel=cancel,
            init_head=start,
            scorer=validation_scorer(lm, validation, layer),
        )
        extra = {"checkpoints": result.checkpoints} if result.checkpoints is not None else {}
        return TrainedProbe(result.head, result.model, result.history, result, extra)

    def train_from_generations(self, lm, generations, layer, val_fraction, options, progress=None) -> TrainReport:
        # the linear kind's split, then `train` (the same starting head as a retrain), then measured
        layer = lm.check_layer(layer if layer is not None else lm.default_layer)
        settings = self.settings(options)
        settings.validate(lm.num_layers, layer)  # before the model runs over every answer
        train_items, val_items = split_items(prepare(lm, generations, [layer], progress=progress), val_fraction)
        trained = self.train(lm, train_items, layer, options, progress=progress, validation=val_items)
        head_config = {**self.head_options(options).head_config().to_dict(), "val_fraction": val_fraction}
        measured = measure_lora(
            lm, trained.state, train_items, val_items, layer, settings, head_config, progress=progress
        )
        measured.config.kind = measured.metrics["kind"] = self.name  # the metrics are the config's too
        return TrainReport(
            TrainedProbe(trained.head, trained.model, trained.history, trained.state, {}),
            measured.config,
            measured.metrics,
            measured.n_train,
            measured.n_validation,
        )

    def save(self, directory, trained, config) -> Path:
        if config.kind != self.name:
            raise UserError(f"a {self.noun} needs a config of kind '{self.name}'")
        return save_lora_probe(directory, trained.state, config)

    def check_files(self, extra: Collection[str], where: str) -> None:
        if set(extra) != set(self.extra_files):
            raise UserError(f"{where}: a LoRA probe needs {' and '.join(self.extra_files)} in the zip")

    def prepare(self, lm, directory, head, config) -> Any | None:
        if config.kind != self.name:
            raise UserError(f"{directory} holds a {config.kind} probe, not a {self.noun}")
        return load_lora_probe(lm, directory)[0]

    def admit(self, lm, directory, head, config, where) -> Any | None:
        # the strict adapter schema and a trial load in a child process come before PEFT runs here
        check_adapter_folder(lm, directory, lm.check_layer(config.layer), where)
        return load_lora_probe(lm, directory, where)[0]

    def describe(self, config: ProbeConfig) -> str:
        return f"LoRA probe on layer {config.layer} (rank {config.lora.get('rank', '?')})"


#: The one table of probe kinds: config.json's `kind` -> implementation.
KINDS: dict[str, ProbeKind] = {kind.name: kind for kind in (LinearKind(), LoraKind())}
LINEAR, LORA = KINDS["linear"], KINDS["lora"]  # the built-in kinds, for code that must name one (the paper's files)


def register_kind(kind: ProbeKind) -> ProbeKind:
    """Add (or replace) a kind in the table; returns it."""
    KINDS[kind.name] = kind
    return kind


def kind_of(name: str) -> ProbeKind:
    """The implementation of a kind name; UserError for a name no kind has."""
    kind = KINDS.get(name)
    if kind is None:
        raise UserError(f"unknown probe kind {name!r}; known kinds: {', '.join(KINDS)}")
    return kind


@dataclass
class LoadedProbe:
    """A probe version loaded and checked against the model it reads; passed whole to everything
    that scores (the engine reads `layer`, `model` and `predict`)."""

    probe_version: int | None  # its number in the database; None for a folder (CLI) or a fresh one
    head: LinearProbe
    config: ProbeConfig
    layer: int
    model: Any | None = None  # the model it reads and that generates with it (None: the base model)

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def implementation(self) -> ProbeKind:
        return kind_of(self.config.kind)

    def predict(self, hidden: Any) -> Any:
        """Scores of hidden states [..., H] of block `layer` of `model`."""
        return self.implementation.score(self.head, hidden)

    def hidden(self, lm: LoadedModel, conversation, token_ids=None) -> torch.Tensor:
        """Block `layer`'s states of an answer as this probe reads them (teacher forced) [T, H]."""
        if self.model is not None:
            return lora_hidden(lm, self.model, conversation, self.layer, token_ids)
        from core.engine.scoring import score_conversation

        return score_conversation(lm, conversation, [self.layer], token_ids).hidden[self.layer]

    def item_scores(
        self,
        lm: LoadedModel,
        items: Sequence[PreparedItem],
        *,
        progress: ProgressFn | None = None,
        counted: tuple[int, int] | None = None,
        stage: str = "evaluate",
    ) -> list[ItemScores]:
        """ItemScores of prepared answers: cached base states when it reads the base model, else
        one teacher-forced pass of its model per answer; baselines always from the base model.
        Reports `stage` per answer (`counted`: answers scored before these, and the total),
        so a LoRA probe's slow passes show as progress, not as a stage stuck at 0."""
        before, total = counted if counted is not None else (0, len(items))
        out = []
        for n, item in enumerate(items):
            report(progress, stage, before + n, total, "scoring answers")
            if self.model is None:
                hidden = item.acts.hidden[self.layer]
            else:
                hidden = self.hidden(lm, item.generation.conversation, item.acts.trace.token_ids)
            out.append(
                ItemScores(
                    labels=item.labels.labels,
                    span_ids=item.labels.span_ids,
                    span_labels=item.labels.span_labels,
                    probe=_floats(self.predict(hidden)),
                    logprobs=np.asarray(item.acts.trace.logprobs, dtype=np.float64),
                    entropies=np.asarray(item.acts.trace.entropies, dtype=np.float64),
                )
            )
        report(progress, stage, before + len(items), total, "scoring answers")
        return out

    def evaluate(
        self,
        lm: LoadedModel,
        generations: Sequence[Generation],
        threshold: float = 0.5,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> dict[str, Any]:
        """The metrics JSON of this probe on labelled answers."""
        items = prepare(lm, generations, [self.layer], progress=progress, cancel=cancel)
        metrics = evaluate_items(self.item_scores(lm, items), threshold)
        metrics.update({"layer": self.layer, "model": lm.model_id})
        if self.implementation.adapts_model:
            metrics["kind"] = self.kind
        return metrics

    def traces(
        self,
        lm: LoadedModel,
        generations: Sequence[Generation],
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> list[TokenTrace]:
        """Per-token traces of stored answers with this probe's scores (teacher forced)."""
        acts = extract_activations(lm, generations, [self.layer], use_cache=False, progress=progress, cancel=cancel)
        out = []
        for gen, a in zip(generations, acts):
            hidden = (
                a.hidden[self.layer] if self.model is None else self.hidden(lm, gen.conversation, a.trace.token_ids)
            )
            out.append(a.trace.with_scores(_floats(self.predict(hidden)).tolist()))
        return out


#: A fixed answer every untrusted probe scores before it is registered.
PROBE_TEXT = [
    {"role": "user", "content": "Who wrote the novel War and Peace, and when?"},
    {"role": "assistant", "content": "Leo Tolstoy wrote War and Peace; it appeared from 1865 to 1869."},
]


def check_finite_scores(lm: LoadedModel, probe: LoadedProbe, where: str) -> None:
    """Refuse a probe whose scores of `PROBE_TEXT` are not all finite numbers in [0, 1]
    (a NaN alpha or weight would make every score NaN, and Inspect fail on that version)."""
    scores = _floats(probe.predict(probe.hidden(lm, PROBE_TEXT)))
    if scores.size == 0 or not bool(np.all(np.isfinite(scores))) or not bool(np.all((scores >= 0) & (scores <= 1))):
        raise UserError(f"{where}: its scores on a test answer are not finite numbers in [0, 1]; refused")


def _floats(scores: Any) -> np.ndarray:
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    return np.asarray(scores, dtype=np.float64).reshape(-1)


def load_probe_dir(lm: LoadedModel, directory: str | Path, probe_version: int | None = None) -> LoadedProbe:
    """A probe folder loaded for `lm`: head and config checked against it, then the kind prepares
    the model it reads. UserError (ModelMismatchError among them) when it does not fit."""
    head, config = load_probe(
        directory,
        expect_model_id=lm.model_id,
        expect_tokenizer_hash=lm.tokenizer_hash,
        expect_hidden_size=lm.hidden_size,
    )
    kind = kind_of(config.kind)
    layer = lm.check_layer(config.layer)
    return LoadedProbe(probe_version, head, config, layer, kind.prepare(lm, Path(directory), head, config))


def fresh_probe(trained: TrainedProbe, config: ProbeConfig) -> LoadedProbe:
    """A just-trained probe as a loaded one (not yet registered), to measure it."""
    return LoadedProbe(None, trained.head, config, config.layer, trained.model)
