"""Generate token by token with the KV cache, giving each token its hidden state and score.

Each forward pass yields the hidden state of the token just fed (scored at once) and the
logits of the next one, so streaming costs no second pass (`benchmarks/stream_overhead.py`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from core.base.decoding import DecodingSettings
from core.base.errors import UserError
from core.base.progress import CancelToken
from core.base.types import TokenTrace
from core.engine.limits import check_lengths, check_prompt_chars
from core.engine.model import LoadedModel, host_float, input_device

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


def fit_prompt(
    lm: LoadedModel,
    messages: Sequence[dict[str, str]],
    max_new_tokens: int,
    what: str = "the question",
    ids: list[int] | None = None,
) -> list[int]:
    """The prompt's token ids, once it is known to fit (characters first, then tokens with
    `max_new_tokens` after it: `core.engine.limits`); else one clear UserError. `ids`: the
    prompt's ids (`prompt_ids`) when the caller has them already."""
    check_prompt_chars(messages, what)
    ids = prompt_ids(lm, messages) if ids is None else ids
    check_lengths(lm, len(ids), int(max_new_tokens), what)
    return ids


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


@dataclass(frozen=True)
class StreamedToken:
    """One generated token as it arrives: token `index` of its answer's growing `trace` (the
    answer's one per-token record), plus this token's hidden states."""

    trace: TokenTrace
    index: int
    hidden: dict[int, torch.Tensor]

    @property
    def token_id(self) -> int:
        return self.trace.token_ids[self.index]

    @property
    def text(self) -> str:
        return self.trace.texts[self.index]

    @property
    def start(self) -> int:
        return self.trace.offsets[self.index][0]

    @property
    def end(self) -> int:
        return self.trace.offsets[self.index][1]

    @property
    def logprob(self) -> float:
        return self.trace.logprobs[self.index]

    @property
    def entropy(self) -> float:
        return self.trace.entropies[self.index]

    @property
    def score(self) -> float | None:
        return None if self.trace.scores is None else self.trace.scores[self.index]


def emit_token(
    trace: TokenTrace,
    token_id: int,
    piece: tuple[str, int, int],
    logprob: float,
    entropy: float,
    hidden: dict[int, torch.Tensor],
    score: float | None,
) -> StreamedToken:
    """Record a finished token in its answer's trace; the stream and the batched engine both do it."""
    text, start, end = piece
    trace.append(token_id, text, (start, end), logprob, entropy, score)
    return StreamedToken(trace, len(trace.token_ids) - 1, hidden)


def distribution_stats(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of the model's own (temperature-1) distribution and its entropy."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    entropy = -(logp.exp() * logp).sum(dim=-1)
    return logp, entropy


def sample_token(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> int:
    """Greedy (temperature 0) or a draw from `generator`, a CPU generator: the draw happens on
    the CPU in float32 whatever the model's device, so a seed means the same on any device."""
    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.detach().to("cpu", torch.float32) / temperature, dim=-1)
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
        self.decoding = DecodingSettings(max_new_tokens, temperature, top_p, seed)
        self.lm = lm
        self.messages = list(messages)
        self.probe = probe
        self.probe_layer = lm.check_layer(probe_layer if probe_layer is not None else lm.default_layer)
        wanted = list(layers) if layers is not None else [self.probe_layer]
        self.layers = sorted({lm.check_layer(x) for x in wanted} | ({self.probe_layer} if probe is not None else set()))
        self.cancel = cancel
        self.prompt_ids = fit_prompt(lm, self.messages, self.decoding.max_new_tokens)
        self.tokens: list[StreamedToken] = []
        self.trace = TokenTrace.empty(scored=probe is not None)  # the answer's per-token record
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
        decoding = self.decoding
        generator = None
        if not decoding.greedy:
            generator = torch.Generator().manual_seed(decoding.seed if decoding.seed is not None else 0)
        eos = lm.eos_ids
        pending: list[tuple[int, float, float, dict[int, torch.Tensor]]] = []
        cache = DynamicCache()
        device = input_device(lm.model)
        with torch.inference_mode(), lm.tap.capture(self.layers) as captured:
            out = lm.model(
                input_ids=torch.tensor([self.prompt_ids], device=device),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            logits = out.logits[0, -1]
            self.finish_reason = "length"
            for _ in range(decoding.max_new_tokens):
                if self._stop.is_set():
                    self.finish_reason = "stopped"
                    break
                if self.cancel is not None and self.cancel.cancelled:
                    self.finish_reason = "cancelled"
                    break
                logp, entropy = distribution_stats(logits)
                token_id = sample_token(logits, decoding.temperature, decoding.top_p, generator)
                if token_id in eos:
                    self.finish_reason = "eos"
                    break
                out = lm.model(
                    input_ids=torch.tensor([[token_id]], device=device),
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                logits = out.logits[0, -1]
                hidden = {layer: host_float(captured[layer][0, -1]) for layer in self.layers}
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
            token = emit_token(self.trace, token_id, (text, start, end), logprob, entropy, hidden, score)
            self.tokens.append(token)
            yield token
        del pending[: len(pieces)]
