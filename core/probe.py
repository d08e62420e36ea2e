"""The probe: a linear head on one layer's residual stream — train, save, load, score.

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

Probe directory contract: ``probe.safetensors`` (tensors ``weight`` [H] and ``bias`` [1],
float32) + ``config.json`` (:class:`ProbeConfig`). Writes are atomic.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import struct
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from core.errors import ModelMismatchError, UserError
from core.progress import CancelToken, ProgressFn, check, report
from core.types import LABEL_VALUES

PROBE_FILE = "probe.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1

__all__ = [
    "FORMAT_VERSION",
    "LinearProbe",
    "ProbeConfig",
    "TrainConfig",
    "TrainingSet",
    "build_training_set",
    "default_layer",
    "fold_standardization",
    "is_probe_dir",
    "load_probe",
    "probe_loss",
    "save_probe",
    "split_by_generation",
    "train_probe",
    "training_data_hash",
]


# --------------------------------------------------------------------------- layer


def default_layer(num_layers: int) -> int:
    """The paper's layer: ``floor(0.95 * num_layers)`` (0-based index into model.model.layers).

    Integer arithmetic, so e.g. 20 layers -> 19 exactly (no float rounding surprises).
    """
    if num_layers < 1:
        raise UserError(f"model has {num_layers} decoder layers; need at least 1")
    return min(num_layers - 1, (95 * num_layers) // 100)


# --------------------------------------------------------------------------- probe


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
    def from_weights(cls, weight: torch.Tensor | np.ndarray, bias: torch.Tensor | np.ndarray | float) -> "LinearProbe":
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
        return self.linear(h).squeeze(-1)

    @torch.no_grad()
    def predict(self, h: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Probabilities for ``h`` of shape [..., H]; numpy in -> float32 numpy out."""
        as_numpy = not isinstance(h, torch.Tensor)
        x = torch.from_numpy(np.asarray(h)) if as_numpy else h
        if x.shape[-1] != self.hidden_size:
            raise ModelMismatchError(
                f"probe expects hidden size {self.hidden_size} but got vectors of size {x.shape[-1]}"
            )
        weight = self.linear.weight
        x = x.to(device=weight.device, dtype=weight.dtype)
        p = torch.sigmoid(self.forward(x)).to(torch.float32)
        return p.cpu().numpy() if as_numpy else p


# --------------------------------------------------------------------------- data


@dataclass
class TrainingSet:
    """Flat, vectorisable training data; batches are made of whole generations.

    ``X`` rows ``gen_offsets[g]:gen_offsets[g+1]`` belong to generation ``g``.
    ``span_ids`` are global indices into ``span_labels`` (-1 = not in a scored span).
    ``X`` may be stored as float16/bfloat16 (e.g. from an activation cache); it is
    converted to float32 one batch at a time.
    """

    X: torch.Tensor  # [N, H]
    labels: torch.Tensor  # int8 [N]: 1, 0, -1 ignored
    weights: torch.Tensor  # float32 [N]: span_weight in spans, 1 background, 0 ignored
    span_ids: torch.Tensor  # int64 [N]
    span_labels: torch.Tensor  # float32 [S]: 1, 0 (negative = excluded from span loss)
    gen_offsets: torch.Tensor  # int64 [G+1]
    gen_keys: list[str]

    @property
    def n_tokens(self) -> int:
        return int(self.X.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_generations(self) -> int:
        return len(self.gen_keys)

    def generation(self, g: int) -> slice:
        return slice(int(self.gen_offsets[g]), int(self.gen_offsets[g + 1]))

    def select(self, keep: Sequence[bool]) -> "TrainingSet":
        """The generations where ``keep`` is True (e.g. ``not is_val``), span ids renumbered."""
        keep = list(keep)
        if len(keep) != self.n_generations:
            raise ValueError(f"select: {len(keep)} flags for {self.n_generations} generations")
        offs = self.gen_offsets.tolist()
        ranges = [(offs[g], offs[g + 1]) for g, k in enumerate(keep) if k]
        if ranges:
            idx = torch.cat([torch.arange(a, b, dtype=torch.int64) for a, b in ranges])
        else:
            idx = torch.zeros(0, dtype=torch.int64)
        old_sids = self.span_ids[idx]
        used = torch.unique(old_sids[old_sids >= 0])
        remap = torch.full((self.span_labels.numel() + 1,), -1, dtype=torch.int64)
        remap[used] = torch.arange(used.numel(), dtype=torch.int64)
        new_sids = torch.where(old_sids >= 0, remap[old_sids.clamp(min=0)], old_sids)
        lengths = torch.tensor([b - a for a, b in ranges], dtype=torch.int64)
        gen_offsets = torch.zeros(len(ranges) + 1, dtype=torch.int64)
        gen_offsets[1:] = torch.cumsum(lengths, 0)
        return TrainingSet(
            X=self.X[idx],
            labels=self.labels[idx],
            weights=self.weights[idx],
            span_ids=new_sids,
            span_labels=self.span_labels[used],
            gen_offsets=gen_offsets,
            gen_keys=[k for k, f in zip(self.gen_keys, keep) if f],
        )


def _as_numpy(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        t = a.detach().cpu()
        if t.dtype == torch.bfloat16:
            t = t.to(torch.float32)
        return t.numpy()
    return np.asarray(a)


def _hidden_tensor(h: Any) -> torch.Tensor:
    if isinstance(h, torch.Tensor):
        return h.detach().cpu()
    return torch.from_numpy(np.ascontiguousarray(np.asarray(h)))


def build_training_set(
    examples: Iterable[tuple[Any, Any, Any, Any, str]],
    span_weight: float = 10.0,
) -> TrainingSet:
    """Flatten ``(hidden [T,H], labels [T], span_ids [T], span_labels [S], key)`` examples.

    ``labels`` int: 1 hallucinated, 0 supported/background, -1 ignored. ``span_ids`` index
    this generation's ``span_labels`` (-1 = not in a scored span); they are remapped to
    global indices. Token weights: ``span_weight`` inside a scored span, 1 on background,
    0 on ignored tokens.
    """
    hs: list[torch.Tensor] = []
    labs: list[np.ndarray] = []
    sids: list[np.ndarray] = []
    slabs: list[np.ndarray] = []
    keys: list[str] = []
    lengths: list[int] = []
    hidden_size: int | None = None
    span_base = 0
    for ex in examples:
        if len(ex) != 5:
            raise ValueError("each example must be (hidden, labels, span_ids, span_labels, key)")
        hidden, labels, span_ids, span_labels, key = ex
        h = _hidden_tensor(hidden)
        lab = _as_numpy(labels).astype(np.int64, copy=False).reshape(-1)
        sid = _as_numpy(span_ids).astype(np.int64, copy=False).reshape(-1)
        slab = _as_numpy(span_labels).astype(np.float32, copy=False).reshape(-1)
        if h.ndim != 2:
            raise UserError(f"generation {key!r}: hidden states must be [tokens, hidden], got shape {tuple(h.shape)}")
        T = int(h.shape[0])
        if hidden_size is None:
            hidden_size = int(h.shape[1])
        elif int(h.shape[1]) != hidden_size:
            raise UserError(
                f"generation {key!r}: hidden size {int(h.shape[1])} differs from {hidden_size} of earlier generations"
            )
        if lab.shape[0] != T or sid.shape[0] != T:
            raise UserError(
                f"generation {key!r}: {T} hidden states but {lab.shape[0]} labels and {sid.shape[0]} span ids"
            )
        if T and not np.isin(lab, (-1, 0, 1)).all():
            raise UserError(f"generation {key!r}: token labels must be 1, 0 or -1")
        if T and (sid.min() < -1 or sid.max() >= slab.shape[0]):
            raise UserError(f"generation {key!r}: span id out of range (has {slab.shape[0]} spans)")
        gsid = np.where(sid >= 0, sid + span_base, -1)
        span_base += slab.shape[0]
        hs.append(h)
        labs.append(lab)
        sids.append(gsid)
        slabs.append(slab)
        keys.append(str(key))
        lengths.append(T)

    n_labelled = sum(int((lab >= 0).sum()) for lab in labs)
    if n_labelled == 0:
        raise UserError("no labelled tokens")
    if not any(bool((lab == 1).any()) for lab in labs):
        raise UserError("training data has no hallucinated (label 1) tokens")
    if not any(bool((lab == 0).any()) for lab in labs):
        raise UserError("training data has no supported/background (label 0) tokens")

    half = {torch.float16, torch.bfloat16}
    dtypes = {h.dtype for h in hs if h.shape[0]}
    dtype = dtypes.pop() if len(dtypes) == 1 and next(iter(dtypes)) in half else torch.float32
    X = torch.cat([h.to(dtype) for h in hs], 0)
    labels_all = np.concatenate(labs).astype(np.int8)
    sids_all = np.concatenate(sids).astype(np.int64)
    weights = np.where(labels_all < 0, 0.0, np.where(sids_all >= 0, span_weight, 1.0)).astype(np.float32)
    gen_offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    gen_offsets[1:] = np.cumsum(lengths)
    return TrainingSet(
        X=X,
        labels=torch.from_numpy(labels_all),
        weights=torch.from_numpy(weights),
        span_ids=torch.from_numpy(sids_all),
        span_labels=torch.from_numpy(np.concatenate(slabs) if slabs else np.zeros(0, np.float32)),
        gen_offsets=torch.from_numpy(gen_offsets),
        gen_keys=keys,
    )


def split_by_generation(keys: Sequence[str], val_fraction: float, salt: str = "probelens") -> list[bool]:
    """True = validation. Each key's side depends only on (salt, key, val_fraction)."""
    try:
        frac = float(val_fraction)
    except (TypeError, ValueError):
        raise UserError(f"validation fraction must be a number in [0, 1), got {val_fraction!r}") from None
    if not (0.0 <= frac < 1.0):  # also rejects NaN
        raise UserError(f"validation fraction must be in [0, 1), got {val_fraction!r}")
    out = []
    for key in keys:
        digest = hashlib.sha256((salt + str(key)).encode("utf-8")).digest()
        u = struct.unpack(">Q", digest[:8])[0] / 2.0**64  # uniform in [0, 1)
        out.append(u < frac)
    return out


def training_data_hash(keys_and_labels: Iterable[tuple[str, Any]]) -> str:
    """sha256 over the generations' keys and labels, independent of their order.

    ``labels`` may be a token label array (any ints) or any JSON-serialisable value
    (e.g. a list of span dicts); the same data always gives the same hash.
    """
    items = []
    for key, labels in keys_and_labels:
        if isinstance(labels, (np.ndarray, torch.Tensor)):
            payload = b"a" + _as_numpy(labels).astype(np.int64).reshape(-1).tobytes()
        else:
            try:
                payload = b"a" + np.asarray(labels, dtype=np.int64).reshape(-1).tobytes()
            except (TypeError, ValueError):
                payload = b"j" + json.dumps(labels, sort_keys=True, default=str).encode("utf-8")
        items.append((str(key), payload))
    items.sort(key=lambda kv: kv[0])
    h = hashlib.sha256()
    for key, payload in items:
        kb = key.encode("utf-8")
        h.update(len(kb).to_bytes(8, "little") + kb + len(payload).to_bytes(8, "little") + payload)
    return h.hexdigest()


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
    wts = torch.where(labelled, weights.to(logits.dtype), torch.zeros((), dtype=logits.dtype))
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
        span_max = torch.full((n_spans,), float("-inf"), dtype=logits.dtype).scatter_reduce(
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
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def fold_standardization(
    weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``w·((h-mean)/std) + b`` == ``w'·h + b'``: returns float32 ``(w' [H], b' [1])``."""
    w64 = weight.detach().to(torch.float64).reshape(-1) / std.to(torch.float64).reshape(-1)
    b64 = bias.detach().to(torch.float64).reshape(-1) - (w64 * mean.to(torch.float64).reshape(-1)).sum()
    return w64.to(torch.float32), b64.to(torch.float32)


def _feature_stats(
    X: torch.Tensor, max_rows: int = 262144, chunk: int = 8192
) -> tuple[torch.Tensor, torch.Tensor]:
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


# --------------------------------------------------------------------------- config + files


def _utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class ProbeConfig:
    """What ``config.json`` holds; everything needed to trust and reuse a probe."""

    model_id: str
    tokenizer_hash: str | None
    layer: int
    hidden_size: int
    label_mapping: dict[str, int | None] = field(default_factory=lambda: dict(LABEL_VALUES))
    training_data_hash: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=_utc_now)
    version: int | str = 1
    format_version: int = FORMAT_VERSION
    train_config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProbeConfig":
        if not isinstance(d, dict):
            raise UserError("probe config must be a JSON object")
        fmt = d.get("format_version", FORMAT_VERSION)
        if not isinstance(fmt, int) or fmt > FORMAT_VERSION:
            raise UserError(
                f"probe format version {fmt!r} is newer than this ProbeLens supports ({FORMAT_VERSION})"
            )
        missing = [k for k in ("model_id", "layer", "hidden_size") if k not in d]
        if missing:
            raise UserError(f"probe config lacks {', '.join(missing)}")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        kwargs.setdefault("tokenizer_hash", None)
        cfg = cls(**kwargs)
        try:
            cfg.layer = int(cfg.layer)
            cfg.hidden_size = int(cfg.hidden_size)
        except (TypeError, ValueError):
            raise UserError("probe config: layer and hidden_size must be integers") from None
        return cfg


def is_probe_dir(directory: str | os.PathLike) -> bool:
    p = Path(directory)
    return (p / PROBE_FILE).is_file() and (p / CONFIG_FILE).is_file()


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
        with open(d / CONFIG_FILE, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read {d / CONFIG_FILE}: {e}") from None
    config = ProbeConfig.from_dict(raw)
    try:
        tensors = load_file(str(d / PROBE_FILE))
    except Exception as e:  # safetensors raises several types for corrupt files
        raise UserError(f"cannot read {d / PROBE_FILE}: {e}") from None
    weight, bias = tensors.get("weight"), tensors.get("bias")
    if weight is None or bias is None or weight.ndim != 1 or bias.numel() != 1:
        raise UserError(f"{d / PROBE_FILE} must hold tensors 'weight' [H] and 'bias' [1]")
    if weight.shape[0] != config.hidden_size:
        raise UserError(
            f"probe directory {d} is inconsistent: config says hidden size {config.hidden_size} "
            f"but the weights have {weight.shape[0]}"
        )

    model_differs = expect_model_id is not None and expect_model_id != config.model_id
    size_differs = expect_hidden_size is not None and int(expect_hidden_size) != config.hidden_size
    if model_differs or size_differs:
        raise ModelMismatchError(
            f"probe was trained {_side(config.model_id, config.hidden_size, True)} "
            f"but the loaded model {_side(expect_model_id, expect_hidden_size, False)}"
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
    return LinearProbe.from_weights(weight, bias), config
