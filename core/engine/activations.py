"""Hidden-state cache: run the model over a generation once per (model, layer), reuse forever.

Entries are keyed by the model (id + tokenizer hash, plus the weights' dtype when it is not
float32), the layer and a hash of the conversation (plus stored token ids when present), so a
retrain after a few corrected labels only extracts what is new. Hidden states are stored in 16
bits to halve the disk: float16 for a float32 model (as always), bfloat16 for a bfloat16 model
(a GPU's; its states are bfloat16 already, so nothing is lost, and float16 could overflow on
a residual stream's outlier dimensions). They are read back as float32.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from core.base.progress import CancelToken, ProgressFn, check, report
from core.base.types import Generation, TokenTrace
from core.engine.model import LoadedModel, cache_root
from core.engine.scoring import score_batch

DEFAULT_TOKEN_BUDGET = 4096  # padded tokens per forward pass; bounds memory on 2-core laptops


@dataclass
class GenerationActivations:
    """One generation's per-token data (unscored) plus its hidden states at the requested layers."""

    key: str
    trace: TokenTrace
    hidden: dict[int, torch.Tensor]  # layer -> float32 [T, H] on the CPU


def stored_token_ids(gen: Generation) -> list[int] | None:
    """Token ids saved with a generation (interchange "tokens.ids"), when there are any."""
    tokens = gen.extra.get("tokens")
    if isinstance(tokens, dict) and isinstance(tokens.get("ids"), list):
        return [int(i) for i in tokens["ids"]]
    return None


def generation_key(gen: Generation) -> str:
    payload = json.dumps({"c": gen.conversation, "ids": stored_token_ids(gen)}, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _model_dtype(lm: LoadedModel) -> torch.dtype:
    return getattr(lm, "dtype", torch.float32)


def model_key(lm: LoadedModel) -> str:
    """The model's folder in the cache; a bfloat16 model's states are kept apart from float32 ones."""
    dtype = _model_dtype(lm)
    suffix = "" if dtype == torch.float32 else f"\n{str(dtype).removeprefix('torch.')}"
    return hashlib.sha256(f"{lm.model_id}\n{lm.tokenizer_hash}{suffix}".encode()).hexdigest()[:16]


def storage_dtype(lm: LoadedModel) -> torch.dtype:
    """How the cache stores this model's hidden states: bfloat16 for a bfloat16 model, else float16."""
    return torch.bfloat16 if _model_dtype(lm) == torch.bfloat16 else torch.float16


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class ActivationCache:
    """Files under <cache>/activations/<model key>/: meta/<gen>.json and L<layer>/<gen>.safetensors."""

    def __init__(self, lm: LoadedModel, root: Path | None = None) -> None:
        self.root = (root or cache_root() / "activations") / model_key(lm)
        self.dtype = storage_dtype(lm)

    def as_stored(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` rounded as the cache stores it, as float32: cold and warm runs then agree exactly."""
        return tensor.to(self.dtype).float()

    def _meta_path(self, key: str) -> Path:
        return self.root / "meta" / key[:2] / f"{key}.json"

    def _layer_path(self, key: str, layer: int) -> Path:
        return self.root / f"L{layer}" / key[:2] / f"{key}.safetensors"

    def get(self, key: str, layers: Sequence[int]) -> GenerationActivations | None:
        meta_path = self._meta_path(key)
        if not meta_path.exists() or not all(self._layer_path(key, x).exists() for x in layers):
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            hidden = {x: load_file(self._layer_path(key, x))["hidden"].float() for x in layers}
            trace = TokenTrace.from_dict(meta)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a damaged entry is simply extracted again
        return GenerationActivations(key, trace, hidden)

    def put(self, item: GenerationActivations) -> None:
        meta = {k: v for k, v in item.trace.to_dict().items() if k != "scores"}  # scores are never cached
        for layer, tensor in item.hidden.items():
            data = {"hidden": tensor.to(self.dtype).contiguous()}
            _atomic_write(self._layer_path(item.key, layer), lambda tmp, d=data: save_file(d, tmp))
        payload = json.dumps(meta, ensure_ascii=False)
        _atomic_write(self._meta_path(item.key), lambda tmp: Path(tmp).write_text(payload, encoding="utf-8"))


def _batches(lengths: Sequence[int], order: Sequence[int], budget: int) -> list[list[int]]:
    """Group indices (already sorted by length) so rows x longest row stays within budget."""
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        candidate = max(longest, lengths[index])
        if current and candidate * (len(current) + 1) > budget:
            batches.append(current)
            current, candidate = [], lengths[index]
        current.append(index)
        longest = candidate
    if current:
        batches.append(current)
    return batches


def extract_activations(
    lm: LoadedModel,
    generations: Sequence[Generation],
    layers: Sequence[int],
    *,
    cache: ActivationCache | None = None,
    use_cache: bool = True,
    token_budget: int = DEFAULT_TOKEN_BUDGET,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> list[GenerationActivations]:
    """Hidden states of every generation at `layers`, from the cache where possible."""
    layers = sorted({lm.check_layer(x) for x in layers})
    cache = cache if cache is not None else (ActivationCache(lm) if use_cache else None)
    keys = [generation_key(g) for g in generations]
    results: list[GenerationActivations | None] = [cache.get(k, layers) if cache else None for k in keys]
    missing = [i for i, r in enumerate(results) if r is None]
    total = len(generations)
    done = total - len(missing)
    report(progress, "extract", done, total, f"{done} cached")
    lengths = [len(generations[i].completion) // 3 + 64 for i in range(total)]  # rough token estimate
    order = sorted(missing, key=lambda i: lengths[i])
    for batch in _batches(lengths, order, token_budget):
        check(cancel)
        scored = score_batch(
            lm,
            [generations[i].conversation for i in batch],
            layers,
            [stored_token_ids(generations[i]) for i in batch],
        )
        for i, item in zip(batch, scored):
            hidden = item.hidden
            if cache is not None:
                # Round as the cache stores it, so cold and warm runs agree exactly.
                hidden = {layer: cache.as_stored(h) for layer, h in hidden.items()}
            result = GenerationActivations(keys[i], item.trace, hidden)
            if cache is not None:
                cache.put(result)
            results[i] = result
        done += len(batch)
        report(progress, "extract", done, total, f"{done}/{total} generations")
    return [r for r in results if r is not None]
