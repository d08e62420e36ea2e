"""The probe: a linear head on one layer's residual stream — its loss and its training.

Method (Obeso et al. 2025, see METHOD.md): ``p = sigmoid(w·h + b)`` where ``h`` is the
residual stream output of decoder block ``L`` at each completion token's own position.

Training loss, per batch of whole generations:

* token loss: BCE-with-logits on every labelled token, weight ``span_weight`` (10) on
  tokens inside an annotated (scored) span, 1 on background tokens, 0 on ignored tokens,
  normalised by the sum of the weights in the batch;
* span-max loss: for every span present in the batch, BCE(max logit over its tokens,
  span label), averaged over those spans;
* total = ``(1 - w) * token + w * span_max`` with ``w`` rising linearly from 0 (first
  step) to 1 (last step); optimiser AdamW.

Inputs are optionally standardised per dimension during training (LLM residual streams
have a few huge-magnitude outlier dimensions that make plain SGD/Adam on raw states crawl);
the mean/std are folded back into ``w`` and ``b`` at the end, so a saved probe is always
exactly ``sigmoid(w·h + b)`` on raw hidden states.

Files: :mod:`core.probes.files`; config: :mod:`core.probes.config`; data:
:mod:`core.probes.training_set`.
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from core.base.errors import ModelMismatchError, UserError
from core.base.progress import CancelToken, ProgressFn, check, report
from core.probes.training_set import TrainingSet


def default_layer(num_layers: int) -> int:
    """The paper's layer: ``floor(0.95 * num_layers)`` (0-based index into model.model.layers).

    Integer arithmetic, so e.g. 20 layers -> 19 exactly (no float rounding surprises).
    """
    if num_layers < 1:
        raise UserError(f"model has {num_layers} decoder layers; need at least 1")
    return min(num_layers - 1, (95 * num_layers) // 100)


class LinearProbe(torch.nn.Module):
    """``logit = w·h + b``; ``predict`` gives ``sigmoid(logit)``."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        if hidden_size < 1:
            raise ValueError(f"hidden_size must be positive, got {hidden_size}")
        self.linear = torch.nn.Linear(hidden_size, 1, bias=True)

    @property
    def hidden_size(self) -> int:
        return self.linear.in_features

    @classmethod
    def from_weights(cls, weight: torch.Tensor | np.ndarray, bias: torch.Tensor | np.ndarray | float) -> LinearProbe:
        w = torch.as_tensor(np.asarray(weight) if not isinstance(weight, torch.Tensor) else weight)
        w = w.detach().to(torch.float32).reshape(-1)
        b = torch.as_tensor(bias if isinstance(bias, torch.Tensor) else np.asarray(bias, dtype=np.float32))
        b = b.detach().to(torch.float32).reshape(-1)
        if b.numel() != 1:
            raise ValueError(f"bias must have one element, got {b.numel()}")
        probe = cls(w.numel())
        with torch.no_grad():
            probe.linear.weight.copy_(w.reshape(1, -1))
            probe.linear.bias.copy_(b)
        return probe

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Logits in the head's dtype (float32): a bfloat16 hidden state is cast up first."""
        return self.linear(h.to(self.linear.weight.dtype)).squeeze(-1)

    @torch.no_grad()
    def predict(self, h: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Probabilities for ``h`` of shape [..., H], computed in float32 on the probe's device
        (the CPU) whatever ``h``'s dtype and device; numpy in -> float32 numpy out."""
        as_numpy = not isinstance(h, torch.Tensor)
        x = h if isinstance(h, torch.Tensor) else torch.from_numpy(np.asarray(h))
        if x.shape[-1] != self.hidden_size:
            raise ModelMismatchError(
                f"probe expects hidden size {self.hidden_size} but got vectors of size {x.shape[-1]}"
            )
        weight = self.linear.weight
        x = x.to(device=weight.device, dtype=weight.dtype)
        p = torch.sigmoid(self.forward(x)).to(torch.float32)
        return p.cpu().numpy() if as_numpy else p


# --------------------------------------------------------------------------- loss


def probe_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    span_ids: torch.Tensor,
    span_labels: torch.Tensor,
    w: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The paper's mixed loss on one batch; returns ``(total, token_loss, span_loss)``.

    ``logits``/``labels``/``weights``/``span_ids`` are per token [n]; ``span_ids`` index
    ``span_labels`` [S] (-1 = none). Tokens with label < 0 get weight 0. Spans with no
    token in the batch, or with a negative label, are left out of the span mean. A term
    with nothing to average is 0.
    """
    logits = logits.reshape(-1)
    labels = labels.reshape(-1)
    labelled = labels >= 0
    targets = torch.where(labelled, labels, torch.zeros_like(labels)).to(logits.dtype)
    wts = torch.where(labelled, weights.to(logits.dtype), torch.zeros((), dtype=logits.dtype, device=logits.device))
    per_token = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    wsum = wts.sum()
    if float(wsum) > 0:
        token_loss = (per_token * wts).sum() / wsum
    else:
        token_loss = logits.sum() * 0.0

    in_span = span_ids >= 0
    n_spans = int(span_labels.numel())
    span_loss = logits.sum() * 0.0
    if n_spans and bool(in_span.any()):
        sid = span_ids[in_span]
        span_max = torch.full((n_spans,), float("-inf"), dtype=logits.dtype, device=logits.device).scatter_reduce(
            0, sid, logits[in_span], "amax", include_self=False
        )
        present = (torch.bincount(sid, minlength=n_spans) > 0) & (span_labels >= 0)
        if bool(present.any()):
            span_loss = F.binary_cross_entropy_with_logits(
                span_max[present], span_labels[present].to(logits.dtype), reduction="mean"
            )
    total = (1.0 - w) * token_loss + w * span_loss
    return total, token_loss, span_loss


# --------------------------------------------------------------------------- training


@dataclass
class TrainConfig:
    """Training settings.

    Defaults: AdamW lr 1e-3 (the paper's head uses 1e-3..5e-3), weight decay 0.01, batches
    of 16 whole generations capped at 65 536 tokens. The paper runs one epoch over ~8k long
    answers (~500 steps of 16). Our data sets are usually far smaller, so ``epochs=None``
    picks the fewest epochs giving at least ``min_steps`` (300) optimiser steps, at most
    ``max_auto_epochs`` (50; only tiny sets of < ~100 generations reach it) — on
    paper-sized data (>= 4 800 generations) that is one epoch, as in the paper. Set
    ``epochs`` to force a number. A generation longer than ``max_batch_tokens`` is never
    split (the span-max term needs whole spans); it forms a batch of its own.
    ``span_weight`` (10, the paper's) is the token-loss weight inside scored spans; it
    overrides the span weight stored in the TrainingSet.

    ``num_threads`` (default 1): torch intra-op threads while training. A probe step is a
    small matmul; one thread is several times faster than two on a 2-core machine (no
    OpenMP barriers, no slow-down when other work competes for the cores) and makes the
    result independent of the machine's thread count. ``None`` keeps torch's setting.
    """

    lr: float = 1e-3
    weight_decay: float = 0.01
    epochs: int | None = None
    min_steps: int = 300
    max_auto_epochs: int = 50
    batch_generations: int = 16
    max_batch_tokens: int = 65536
    span_weight: float = 10.0
    seed: int = 0
    standardize: bool = True
    num_threads: int | None = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


#: The quick training of the layer sweep and the cross-validated label checks.
QUICK_TRAIN = TrainConfig(min_steps=100, max_auto_epochs=20)


def fold_standardization(
    weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``w·((h-mean)/std) + b`` == ``w'·h + b'``: returns float32 ``(w' [H], b' [1])``."""
    w64 = weight.detach().to(torch.float64).reshape(-1) / std.to(torch.float64).reshape(-1)
    b64 = bias.detach().to(torch.float64).reshape(-1) - (w64 * mean.to(torch.float64).reshape(-1)).sum()
    return w64.to(torch.float32), b64.to(torch.float32)


def _feature_stats(X: torch.Tensor, max_rows: int = 262144, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of ``X`` (all rows, or ``max_rows`` evenly spaced ones).

    The statistics only precondition the optimisation (they are folded back exactly), so a
    deterministic sample is as good as all rows. One pass: float32 chunk sums of data
    shifted by a rough mean (no cancellation even on huge outlier dimensions), accumulated
    in float64. Returns float64 tensors.
    """
    n, h = X.shape
    rows = torch.linspace(0, n - 1, max_rows).round().to(torch.int64) if n > max_rows else None
    m = max_rows if rows is not None else n
    shift = X[: min(n, 1024)].to(torch.float32).mean(0)
    s1 = torch.zeros(h, dtype=torch.float64)
    s2 = torch.zeros(h, dtype=torch.float64)
    for a in range(0, m, chunk):
        c = X[a : a + chunk] if rows is None else X.index_select(0, rows[a : a + chunk])
        c = c.to(torch.float32) - shift
        s1 += c.sum(0).to(torch.float64)
        s2 += (c * c).sum(0).to(torch.float64)
    d = s1 / max(m, 1)
    mean = shift.to(torch.float64) + d
    std = torch.sqrt((s2 / max(m, 1) - d * d).clamp(min=0.0))
    # Constant dimensions (spread below float32 resolution of their mean): leave unscaled.
    std = torch.where(std > 1e-6 * mean.abs() + 1e-12, std, torch.ones_like(std))
    return mean, std


@contextmanager
def _torch_threads(n: int | None):
    """Run the block with ``n`` torch intra-op threads (in this thread), then restore."""
    old = torch.get_num_threads()
    if n is None or n == old:
        yield
        return
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _plan_epoch(lengths: list[int], order: list[int], max_gens: int, max_tokens: int) -> list[list[int]]:
    batches: list[list[int]] = []
    cur: list[int] = []
    cur_tokens = 0
    for g in order:
        t = lengths[g]
        if t == 0:
            continue
        if cur and (len(cur) >= max_gens or cur_tokens + t > max_tokens):
            batches.append(cur)
            cur, cur_tokens = [], 0
        cur.append(g)
        cur_tokens += t
    if cur:
        batches.append(cur)
    return batches


def train_probe(
    data: TrainingSet,
    config: TrainConfig | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> tuple[LinearProbe, list[dict]]:
    """Train a :class:`LinearProbe` on ``data``; returns ``(probe, history)``.

    ``history`` has one dict per optimiser step: ``step`` (1-based), ``epoch``, ``loss``,
    ``token_loss``, ``span_loss``, ``w``. Same data + same config -> bit-identical probe
    (zero init, seeded ``torch.Generator`` for the shuffle, no nondeterministic ops).
    """
    config = config or TrainConfig()
    with _torch_threads(config.num_threads):
        return _train(data, config, progress, cancel)


def _train(
    data: TrainingSet, config: TrainConfig, progress: ProgressFn | None, cancel: CancelToken | None
) -> tuple[LinearProbe, list[dict]]:
    if config.batch_generations < 1 or config.max_batch_tokens < 1:
        raise UserError("batch_generations and max_batch_tokens must be positive")
    if not (config.lr > 0):
        raise UserError(f"learning rate must be positive, got {config.lr}")
    if data.n_tokens == 0 or not bool((data.labels >= 0).any()):
        raise UserError("no labelled tokens")
    if data.X.ndim != 2:
        raise UserError(f"hidden states must be [tokens, hidden], got shape {tuple(data.X.shape)}")
    H = data.hidden_size
    G = data.n_generations
    offsets = data.gen_offsets.tolist()
    lengths = [offsets[g + 1] - offsets[g] for g in range(G)]

    # Batch plan for all epochs up front: the w schedule needs the total step count.
    gen = torch.Generator().manual_seed(int(config.seed))

    def epoch_plan() -> list[list[int]]:
        order = torch.randperm(G, generator=gen).tolist()
        return _plan_epoch(lengths, order, config.batch_generations, config.max_batch_tokens)

    plans = [epoch_plan()]
    if config.epochs is not None:
        if config.epochs < 1:
            raise UserError(f"epochs must be at least 1, got {config.epochs}")
        n_epochs = int(config.epochs)
    else:
        auto = math.ceil(config.min_steps / max(len(plans[0]), 1))
        n_epochs = max(1, min(int(config.max_auto_epochs), auto))
    while len(plans) < n_epochs:
        plans.append(epoch_plan())
    total_steps = sum(len(p) for p in plans)

    if config.standardize:
        mean, std = _feature_stats(data.X)
    else:
        mean, std = torch.zeros(H, dtype=torch.float64), torch.ones(H, dtype=torch.float64)
    mean32 = mean.to(torch.float32)
    inv_std32 = (1.0 / std).to(torch.float32)

    labels_f = data.labels.to(torch.float32)
    span_ids = data.span_ids.to(torch.int64)
    # The config's span_weight is authoritative (it is what the probe's config records):
    # it replaces the weight of every labelled token inside a scored span.
    weights = data.weights.to(torch.float32)
    weights = torch.where((span_ids >= 0) & (weights > 0), torch.tensor(float(config.span_weight)), weights)
    span_labels = data.span_labels.to(torch.float32)

    # Zero weights, bias at the weighted prior log-odds: deterministic and a good start.
    probe = LinearProbe(H)
    lab_mask = data.labels >= 0
    wpos = float((weights * (labels_f == 1)).sum())
    wall = float(weights[lab_mask].sum())
    prior = min(max(wpos / wall, 1e-4), 1 - 1e-4) if wall > 0 else 0.5
    with torch.no_grad():
        probe.linear.weight.zero_()
        probe.linear.bias.fill_(math.log(prior / (1 - prior)))

    optim = torch.optim.AdamW(
        [
            {"params": [probe.linear.weight], "weight_decay": config.weight_decay},
            {"params": [probe.linear.bias], "weight_decay": 0.0},
        ],
        lr=config.lr,
        foreach=False,
    )

    # One reusable float32 batch buffer: no per-step allocation of a large tensor.
    max_batch = max(sum(lengths[g] for g in batch) for plan in plans for batch in plan)
    buf = torch.empty(max_batch, H, dtype=torch.float32)
    X = data.X
    every = max(1, total_steps // 100)
    history: list[dict] = []
    step = 0
    for epoch, plan in enumerate(plans, start=1):
        for batch in plan:
            check(cancel)
            pos = 0
            for g in batch:
                t = lengths[g]
                buf[pos : pos + t].copy_(X[offsets[g] : offsets[g + 1]])
                pos += t
            xb = buf[:pos]
            if config.standardize:
                xb.sub_(mean32).mul_(inv_std32)
            idx = torch.cat([torch.arange(offsets[g], offsets[g + 1], dtype=torch.int64) for g in batch])
            sid = span_ids.index_select(0, idx)
            in_span = sid >= 0
            if bool(in_span.any()):
                used, inverse = torch.unique(sid[in_span], return_inverse=True)
                local = torch.full_like(sid, -1)
                local[in_span] = inverse
                batch_span_labels = span_labels.index_select(0, used)
            else:
                local = sid
                batch_span_labels = span_labels[:0]
            w = step / (total_steps - 1) if total_steps > 1 else 1.0
            logits = probe(xb)
            loss, tok_loss, span_loss = probe_loss(
                logits, labels_f.index_select(0, idx), weights.index_select(0, idx), local, batch_span_labels, w
            )
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            step += 1
            rec = {
                "step": step,
                "epoch": epoch,
                "loss": loss.item(),
                "token_loss": tok_loss.item(),
                "span_loss": span_loss.item(),
                "w": float(w),
            }
            history.append(rec)
            if step % every == 0 or step == total_steps:
                report(progress, "train", step, total_steps, f"loss {rec['loss']:.4f}")
    del buf

    fw, fb = fold_standardization(probe.linear.weight, probe.linear.bias, mean, std)
    return LinearProbe.from_weights(fw, fb), history
