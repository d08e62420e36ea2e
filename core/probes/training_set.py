"""Training data for a probe: flat token arrays with whole generations as batch units.

Also the two data rules every caller shares: which answers are validation (a stable hash
of each answer's key) and the training-data hash stored with a version.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.base.errors import UserError


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

    def select(self, keep: Sequence[bool]) -> TrainingSet:
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
