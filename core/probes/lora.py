"""The paper's stronger probe: LoRA adapters on decoder blocks first..L trained with the head.

The head is the linear probe (`LinearProbe`) on block L's output, as for the linear kind.
Adapters (PEFT, r=16, alpha=32, dropout 0.05 by default) sit on the attention and MLP
projections of the chosen blocks. The loss is the linear probe's (token BCE with weight 10
on span tokens plus the annealed span-max term) plus `kl_weight` × KL(frozen ‖ adapted) of
the next-token distributions on the answer's tokens, so the adapted model keeps generating
what the base model would. Training runs the model forward and backward on batches of whole
answers (the activation cache cannot serve it), with progress, cancel and a fixed seed.

The adapters go on a deep copy of the loaded model: the shared model other sessions use is
never changed. The copy's decoder blocks keep the loaded model's layer taps, so
`lm.tap.capture` reads block L of the adapted model too.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from core.base.errors import UserError
from core.base.progress import CancelToken, ProgressFn, check, report
from core.base.types import Generation
from core.engine.activations import stored_token_ids
from core.engine.model import LoadedModel, host_float, input_device
from core.engine.scoring import completion_tokens
from core.engine.stream import prompt_ids
from core.probes.linear import LinearProbe, probe_loss
from core.text.tokens import token_labels

MAX_ALPHA = 4096  # alpha / r scales the adapters' output; far beyond any published setting
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MAX_CHECKPOINTS = 20  # scored checkpoints in a run by default (each is a pass over the validation answers)


@dataclass
class LoraSettings:
    """What a LoRA probe is trained with; stored in its config."""

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    first_layer: int = 0
    last_layer: int | None = None  # None: the probe's layer
    kl_weight: float = 10.0
    lr: float = 2e-4
    head_lr: float = 1e-3
    epochs: int = 1
    batch_answers: int = 4
    span_weight: float = 10.0
    seed: int = 0
    checkpoint_every: int | None = None  # steps between scored checkpoints; None: 4 per epoch, at most 20 in all

    def check_values(self) -> None:
        """What needs no model: checked before a run starts, so a bad value starts nothing."""
        if not 1 <= self.rank <= 256:
            raise UserError(f"LoRA rank must be between 1 and 256, got {self.rank}")
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and 0 < self.alpha <= MAX_ALPHA):
            raise UserError(f"LoRA alpha must be a finite number in (0, {MAX_ALPHA}], got {self.alpha}")
        if not (math.isfinite(self.dropout) and 0 <= self.dropout < 1):
            raise UserError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.kl_weight <= 1000:
            raise UserError(f"KL weight must be between 0 and 1000, got {self.kl_weight}")
        if not 1 <= self.epochs <= 100 or not 1 <= self.batch_answers <= 256:
            raise UserError("epochs must be 1-100 and answers per batch 1-256")
        if self.checkpoint_every is not None and not 1 <= self.checkpoint_every <= 100_000:
            raise UserError(f"checkpoint interval must be 1-100000 steps, got {self.checkpoint_every}")

    def validate(self, num_layers: int, layer: int) -> None:
        self.check_values()
        last = layer if self.last_layer is None else self.last_layer
        if not 0 <= self.first_layer <= last < num_layers:
            raise UserError(f"LoRA layers {self.first_layer}-{last} must lie within 0-{num_layers - 1}")
        if last > layer:
            raise UserError(f"LoRA layers must end at or below the probe's layer {layer} (got {last})")

    def layers(self, layer: int) -> list[int]:
        return list(range(self.first_layer, (layer if self.last_layer is None else self.last_layer) + 1))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def adapted_copy(lm: LoadedModel, settings: LoraSettings, layer: int) -> Any:
    """A deep copy of the loaded model with fresh LoRA adapters on blocks first..last."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(TARGET_MODULES),
        layers_to_transform=settings.layers(layer),
        bias="none",
    )
    return get_peft_model(copy.deepcopy(lm.model), config)


@dataclass
class _Batch:
    input_ids: torch.Tensor  # [B, T], right-padded
    mask: torch.Tensor
    rows: list[tuple[int, int]]  # (prompt length, completion length) per answer
    labels: torch.Tensor  # per completion token, flattened over the batch
    weights: torch.Tensor
    span_ids: torch.Tensor
    span_labels: torch.Tensor


def _batch(lm: LoadedModel, generations: Sequence[Generation], span_weight: float) -> _Batch:
    rows, seqs = [], []
    span_labels: list[torch.Tensor]
    labels, weights, span_ids, span_labels = [], [], [], []
    for gen in generations:
        prompt = prompt_ids(lm, gen.conversation[:-1])
        ids, _texts, offsets = completion_tokens(lm, gen.completion, stored_token_ids(gen))
        tl = token_labels(offsets, gen.spans)
        base = sum(len(s) for s in span_labels)
        labels.append(torch.from_numpy(tl.labels.astype(np.int64)))
        weights.append(torch.where(torch.from_numpy(tl.in_span), span_weight, 1.0).float())
        span_ids.append(torch.from_numpy(np.where(tl.span_ids >= 0, tl.span_ids + base, -1).astype(np.int64)))
        span_labels.append(torch.from_numpy(tl.span_labels.astype(np.float32)))
        rows.append((len(prompt), len(ids)))
        seqs.append(prompt + ids)
    width = max(len(s) for s in seqs)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, seq in enumerate(seqs):
        input_ids[r, : len(seq)] = torch.tensor(seq)
        mask[r, : len(seq)] = 1
    return _Batch(
        input_ids,
        mask,
        rows,
        torch.cat(labels),
        torch.cat(weights),
        torch.cat(span_ids),
        torch.cat(span_labels) if span_labels else torch.zeros(0),
    )


def _on_devices(batch: _Batch, inputs: torch.device, head: torch.device) -> _Batch:
    """Input ids and mask where the model takes them; labels where the head's logits are."""
    return _Batch(
        batch.input_ids.to(inputs),
        batch.mask.to(inputs),
        batch.rows,
        batch.labels.to(head),
        batch.weights.to(head),
        batch.span_ids.to(head),
        batch.span_labels.to(head),
    )


def _completion(tensor: torch.Tensor, rows: list[tuple[int, int]], shift: int = 0) -> torch.Tensor:
    """Positions of each answer's completion tokens (shift -1: the logits that predict them)."""
    return torch.cat([tensor[r, p + shift : p + t + shift] for r, (p, t) in enumerate(rows)])


def kl_to_frozen(model: Any, batch: _Batch, adapted_logits: torch.Tensor) -> torch.Tensor:
    """Mean KL(frozen ‖ adapted) of the next-token distributions that predict the answer's tokens."""
    with torch.no_grad(), model.disable_adapter():
        frozen = model(input_ids=batch.input_ids, attention_mask=batch.mask, use_cache=False).logits
    p_log = F.log_softmax(_completion(frozen, batch.rows, -1).float(), dim=-1)
    q_log = F.log_softmax(_completion(adapted_logits, batch.rows, -1).float(), dim=-1)
    return (p_log.exp() * (p_log - q_log)).sum(-1).mean()


@dataclass
class LoraResult:
    model: Any  # the PEFT model (adapters trained), in eval mode
    head: LinearProbe
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoints: dict[str, Any] | None = None  # which scored checkpoint was kept (see `Checkpoints`)
    start: LinearProbe | None = None  # the head it started from (checkpoint 0); None: a fresh head


#: Scores a checkpoint (the adapted model in eval mode, a CPU copy of the head): higher is better,
#: None when the score is undefined (e.g. the validation answers hold one class only), NaN when
#: the checkpoint's scores are not finite (training diverged: never kept).
CheckpointScorer = Callable[[Any, LinearProbe], "float | None"]


class Checkpoints:
    """Keeps the best-scoring training state, so a LoRA probe never ends worse than it started.

    Checkpoint 0 is the starting state (the linear head, adapters that change nothing); then
    one every `every` steps and one at the last step. Only the trainable tensors (adapters and
    head) are copied, in memory. Ties keep the earlier checkpoint. When a score is undefined
    nothing can be compared and the last state is kept, as without selection."""

    def __init__(self, model: Any, head: LinearProbe, scorer: CheckpointScorer, every: int, total: int) -> None:
        self.model, self.head, self.scorer, self.every, self.total = model, head, scorer, every, total
        self.scores: list[dict[str, Any]] = []
        self.best: tuple[int, float, dict[str, torch.Tensor]] | None = None
        self.undefined = False

    def steps(self) -> list[int]:
        """The steps at which a checkpoint is scored (0 and the last included)."""
        return sorted({0, self.total, *range(self.every, self.total, self.every)})

    def due(self, step: int) -> bool:
        return step == 0 or step == self.total or step % self.every == 0

    def _state(self) -> dict[str, torch.Tensor]:
        state = {f"model.{n}": p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}
        state.update({f"head.{n}": p.detach().clone() for n, p in self.head.named_parameters()})
        return state

    def score(self, step: int) -> float | None:
        """Score the current state (eval mode, no dropout) and remember it if it is the best."""
        was_training = self.model.training
        self.model.eval()
        head = copy.deepcopy(self.head).to("cpu").eval()
        try:
            value = self.scorer(self.model, head)
        finally:
            self.model.train(was_training)
        diverged = value is not None and not math.isfinite(value)
        value = None if value is None or diverged else float(value)
        self.scores.append({"step": step, "span_max_auc": value, **({"diverged": True} if diverged else {})})
        if diverged:
            return None
        if value is None:
            self.undefined = True
        elif self.best is None or value > self.best[1]:
            self.best = (step, value, self._state())
        return value

    def restore_best(self) -> dict[str, Any]:
        """Put the best state back (unless a score was undefined) and say what was kept."""
        last = self.scores[-1]["step"] if self.scores else self.total
        start = self.scores[0]["span_max_auc"] if self.scores else None
        if self.undefined or self.best is None:
            kept, auc = last, self.scores[-1]["span_max_auc"] if self.scores else None
            rule = "last step (a validation score was undefined, so nothing was compared)"
        else:
            kept, auc, state = self.best
            params = dict(self.model.named_parameters())
            heads = dict(self.head.named_parameters())
            with torch.no_grad():
                for key, value in state.items():
                    where, _, name = key.partition(".")
                    (params if where == "model" else heads)[name].copy_(value)
            rule = "best validation span_max AUC (ties keep the earlier step)"
        return {
            "every": self.every,
            "scores": self.scores,
            "kept_step": kept,
            "last_step": last,
            "kept_auc": auc,
            "start_auc": start,
            "gain_over_start": None if auc is None or start is None else auc - start,
            "rule": rule,
        }


def train_lora_probe(
    lm: LoadedModel,
    generations: Sequence[Generation],
    layer: int,
    settings: LoraSettings,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    init_head: LinearProbe | None = None,
    scorer: CheckpointScorer | None = None,
) -> LoraResult:
    """Train adapters and head together on labelled answers (see the module docstring).

    `init_head`: start the head from a linear probe fitted on the base model's (cached)
    states (`LoraKind` passes the linear version's own head). Fresh adapters change nothing
    (PEFT starts B at zero), so training starts from the linear probe's quality instead of
    from chance: on 2 CPU cores a LoRA epoch is a few hundred optimiser steps at most, too
    few to fit a head from scratch. It is not changed (training works on a copy).

    `scorer`: score checkpoints (the start is checkpoint 0) and end with the best one
    (`Checkpoints`); the result's `checkpoints` says which step was kept."""
    layer = lm.check_layer(layer)
    settings.validate(lm.num_layers, layer)
    usable = [g for g in generations if g.completion]
    if not usable:
        raise UserError("no labelled answers to train a LoRA probe on")
    torch.manual_seed(settings.seed)
    order_rng = random.Random(settings.seed)
    model = adapted_copy(lm, settings, layer)
    model.train()
    # The head trains in float32 beside block L's output (on a GPU: there); it comes back to the CPU.
    head_device, inputs_device = lm.layer_device(layer), input_device(lm.model)
    head = copy.deepcopy(init_head) if init_head is not None else LinearProbe(lm.hidden_size)
    head.to(head_device)
    head.train()
    head.requires_grad_(True)
    adapters = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(
        [{"params": adapters, "lr": settings.lr}, {"params": head.parameters(), "lr": settings.head_lr}],
        weight_decay=0.0,
    )
    per_epoch = math.ceil(len(usable) / settings.batch_answers)
    total = per_epoch * settings.epochs
    history: list[dict[str, float]] = []
    # Four checkpoints an epoch, at most MAX_CHECKPOINTS in a run (each scores every validation answer).
    every = settings.checkpoint_every or max(1, math.ceil(per_epoch / 4), math.ceil(total / MAX_CHECKPOINTS))
    checkpoints = Checkpoints(model, head, scorer, every, total) if scorer is not None else None
    last_loss = ["the starting head"]  # the train stage's message keeps the loss while a checkpoint is scored

    def checkpoint(step: int) -> None:
        if checkpoints is None or not checkpoints.due(step):
            return
        n, done = len(checkpoints.steps()), checkpoints.steps().index(step)
        report(progress, "train", step, total, f"{last_loss[0]} · scoring checkpoint {done + 1}/{n} (step {step})")
        value = checkpoints.score(step)
        shown = "undefined" if value is None else f"{value:.4f}"
        report(progress, "train", step, total, f"{last_loss[0]} · checkpoint at step {step}: span_max AUC {shown}")

    step = 0
    checkpoint(0)
    for _epoch in range(settings.epochs):
        order = list(range(len(usable)))
        order_rng.shuffle(order)
        for start in range(0, len(order), settings.batch_answers):
            check(cancel)
            batch = _on_devices(
                _batch(lm, [usable[i] for i in order[start : start + settings.batch_answers]], settings.span_weight),
                inputs_device,
                head_device,
            )
            with lm.tap.capture([layer]) as captured:
                out = model(input_ids=batch.input_ids, attention_mask=batch.mask, use_cache=False)
            hidden = _completion(captured[layer], batch.rows).to(head_device)
            w = step / max(1, total - 1)
            loss, token_loss, span_loss = probe_loss(
                head(hidden), batch.labels, batch.weights, batch.span_ids, batch.span_labels, w
            )
            kl = kl_to_frozen(model, batch, out.logits) if settings.kl_weight > 0 else loss * 0.0
            total_loss = loss + settings.kl_weight * kl
            optimiser.zero_grad()
            total_loss.backward()
            optimiser.step()
            step += 1
            values = {
                name: float(value.detach())
                for name, value in (
                    ("loss", total_loss),
                    ("probe_loss", loss),
                    ("token_loss", token_loss),
                    ("span_loss", span_loss),
                    ("kl", kl),
                )
            }
            history.append({"step": step, **values})
            last_loss[0] = f"loss {values['loss']:.4f} (KL {values['kl']:.4f})"
            report(progress, "train", step, total, last_loss[0])
            checkpoint(step)
    kept = checkpoints.restore_best() if checkpoints is not None else None
    model.eval()
    head.eval()
    head.to("cpu")
    return LoraResult(model, head, history, kept, init_head)


def lora_hidden(
    lm: LoadedModel,
    model: Any,
    conversation: Sequence[dict[str, str]],
    layer: int,
    token_ids: Sequence[int] | None = None,
) -> torch.Tensor:
    """Block `layer`'s output of the adapted model at each answer token (teacher forced) [T, H],
    float32 on the CPU."""
    gen = Generation(conversation=list(conversation))
    if token_ids is not None:
        gen.extra["tokens"] = {"ids": list(token_ids)}
    batch = _batch(lm, [gen], 1.0)
    device = input_device(model)
    with torch.inference_mode(), lm.tap.capture([layer]) as captured:
        model(input_ids=batch.input_ids.to(device), attention_mask=batch.mask.to(device), use_cache=False)
        return host_float(_completion(captured[layer], batch.rows))
