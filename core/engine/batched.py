"""Batched generation: many answers at once on one KV cache, each as exact as a lone stream.

Why by hand: transformers' `generate` batches with left padding but cannot refill a
finished row, reads no hidden state per token without keeping every layer of every step,
and has no per-row seed; its continuous-batching manager targets paged attention on GPUs.
So the loop is ours, and transformers does what it does well: the forward pass, the
`DynamicCache`, causal masks from a 2-D padding mask.

The layout is a left-padded cache whose rows are aligned on the right: every row's next
token goes into the same new column. A row's position ids count only its own tokens, so
padding changes nothing but the arithmetic order (results equal a lone stream to ~1e-6).
A finished row leaves at once and a waiting request is prefilled and merged into the free
slot (continuous batching); columns that no row uses any more are trimmed from the left.

Sampling uses one `torch.Generator` per request, seeded from the request alone, so a seed
gives the same answer whatever the batch size or the neighbours, as long as the logits
agree (they do to ~1e-6; a draw that falls within that of a boundary could differ).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from core.base import settings
from core.base.decoding import DecodingSettings, LogitsConstraint
from core.base.errors import UserError
from core.base.progress import CancelToken
from core.base.types import TokenTrace
from core.engine.masking import constrain
from core.engine.model import LoadedModel, host_float, input_device
from core.engine.stream import (
    IncrementalDecoder,
    StreamedToken,
    distribution_stats,
    emit_token,
    fit_prompt,
    sample_token,
)

MAX_BATCH = 64


def check_question(messages: Sequence[dict[str, str]]) -> None:
    """One clear refusal for a conversation with nothing to answer (empty or blank question)."""
    if not messages:
        raise UserError("the conversation has no prompt messages")
    last = messages[-1]
    if last.get("role") != "user" or not str(last.get("content", "")).strip():
        raise UserError("the question is empty: type a question to ask")


class Scorer(Protocol):
    """A loaded probe as the engine uses it, passed whole: the block it reads, the model that
    generates and that it reads (None: the base model), and its score of a hidden state."""

    layer: int
    model: Any | None

    def predict(self, hidden: torch.Tensor) -> Any: ...


@dataclass
class HeadOnLayer:
    """A bare head on block `layer` as a Scorer (tests and benchmarks that hold only a head)."""

    head: Any
    layer: int
    model: Any | None = None

    def predict(self, hidden: torch.Tensor) -> Any:
        return self.head.predict(hidden)


@dataclass
class GenerationRequest:
    """One answer to generate; `on_token` may return True to stop it after that token."""

    messages: Sequence[dict[str, str]]
    decoding: DecodingSettings = field(default_factory=DecodingSettings)
    probe: Any | None = None
    probe_layer: int | None = None
    layers: Sequence[int] = ()
    on_token: Callable[[StreamedToken], bool | None] | None = None
    tag: Any = None
    # How many most likely alternatives to record per sampled token (the serving API's
    # `top_logprobs`); the engine appends (token id, log-prob) lists to `alternatives`, one per
    # sampled token in order, before that token is emitted, so `alternatives[token.index]` is there.
    top_logprobs: int = 0
    alternatives: list[list[tuple[int, float]]] = field(default_factory=list)
    # Which tokens this answer may take (structured output); its mask touches this row alone.
    constraint: LogitsConstraint | None = None
    # Called on the engine thread at the end of every step in which this answer got tokens, once
    # every row's tokens of that step are out: a consumer on another thread can take a step's
    # tokens in one hand-over instead of being woken for each (the serving API does).
    on_step: Callable[[], None] | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _prompt: list[int] | None = field(default=None, repr=False)  # token ids, set once they fit the model
    _stepped: bool = field(default=False, repr=False)  # got tokens in the current step (`on_step` is due)

    def validate(self, lm: LoadedModel | None = None, prompt_ids: list[int] | None = None) -> None:
        """The question, and with `lm` its length (PROBELENS_MAX_PROMPT_TOKENS, the model's
        context); the decoding settings were checked when they were made. `prompt_ids`: the
        prompt's token ids when the caller has them already (not tokenised twice)."""
        check_question(self.messages)
        if lm is not None and self._prompt is None:
            self._prompt = fit_prompt(lm, self.messages, self.decoding.max_new_tokens, ids=prompt_ids)

    def stop(self) -> None:
        """End this answer after the current step, whatever its neighbours do (thread-safe)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()


@dataclass
class FinishedAnswer:
    """A request's complete result; `finish_reason` is eos, length, stopped or cancelled.
    `trace` is the answer's per-token record; each of `tokens` is one position of it."""

    request: GenerationRequest
    tokens: list[StreamedToken]
    text: str
    finish_reason: str
    prompt_tokens: int
    trace: TokenTrace


class _Row:
    """A request in flight: its decoder, sampler and the logits of its next token."""

    def __init__(
        self, lm: LoadedModel, request: GenerationRequest, prompt: list[int], probe_layer: int, layers: list[int]
    ) -> None:
        self.request = request
        self.prompt = prompt
        self.length = len(prompt)  # tokens of this row in the cache
        self.probe_layer = probe_layer
        self.layers = layers
        self.decoder = IncrementalDecoder(lm.tokenizer)
        decoding = request.decoding
        self.generator = (
            None
            if decoding.greedy
            else torch.Generator().manual_seed(decoding.seed if decoding.seed is not None else 0)
        )
        self.pending: list[tuple[int, float, float, dict[int, torch.Tensor]]] = []
        self.tokens: list[StreamedToken] = []
        self.trace = TokenTrace.empty(scored=request.probe is not None)  # the answer's per-token record
        self.fed = 0
        self.next_logits: torch.Tensor | None = None
        self.finish_reason: str | None = None
        self.cache: Any = None  # its own cache while a long prompt is prefilled in chunks
        self.filled = 0  # prompt tokens already in `cache`

    def emit(self, pieces: list[tuple[str, int, int]]) -> None:
        if pieces:
            self.request._stepped = True
        for (token_id, logprob, entropy, hidden), (text, start, end) in zip(self.pending[: len(pieces)], pieces):
            probe = self.request.probe
            score = float(probe.predict(hidden[self.probe_layer])) if probe is not None else None
            token = emit_token(self.trace, token_id, (text, start, end), logprob, entropy, hidden, score)
            self.tokens.append(token)
            if self.request.on_token is not None and self.request.on_token(token):
                self.request.stop()
        del self.pending[: len(pieces)]

    def finish(self, reason: str) -> FinishedAnswer:
        self.finish_reason = reason
        self.emit(self.decoder.flush())
        return FinishedAnswer(self.request, self.tokens, self.decoder.text, reason, len(self.prompt), self.trace)


def kv_bytes_per_token(lm: LoadedModel) -> int:
    """Key and value bytes one token costs in the cache, over all layers."""
    config = lm.model.config
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = int(getattr(config, "num_attention_heads", 1))
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    itemsize = torch.empty(0, dtype=lm.model.dtype).element_size()
    return 2 * lm.num_layers * kv_heads * head_dim * itemsize


def auto_batch_size(lm: LoadedModel, tokens_per_answer: int, kv_cache_mb: int | None = None) -> int:
    """The most answers whose KV cache fits the budget (PROBELENS_KV_CACHE_MB), at most MAX_BATCH."""
    budget_tokens = (kv_cache_mb or settings.kv_cache_mb()) * 1024 * 1024 // max(1, kv_bytes_per_token(lm))
    return max(1, min(MAX_BATCH, budget_tokens // max(1, tokens_per_answer)))


def _left_pad(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


class BatchEngine:
    """Holds the rows in flight on one model; `step()` advances every row by one token.

    Not thread-safe by itself: one thread drives it (`generate_batched` in a worker,
    `SharedEngine` for live sessions); other threads only `submit` or `stop` requests.
    """

    def __init__(
        self, lm: LoadedModel, batch_size: int, model: Any | None = None, prefill_chunk: int | None = None
    ) -> None:
        if batch_size < 1:
            raise UserError("batch size must be at least 1")
        self.lm = lm
        # A LoRA probe's adapted copy generates and scores in one pass (its KL term keeps it
        # generating what the base model would); its blocks share `lm`'s layer taps.
        self.model = model if model is not None else lm.model
        self.batch_size = batch_size
        self.rows: list[_Row] = []
        self.waiting: deque[GenerationRequest] = deque()
        self.filling: list[_Row] = []  # admitted, prompt not yet (wholly) in the cache
        self.prefill_chunk = prefill_chunk  # None: PROBELENS_PREFILL_CHUNK_TOKENS, read each step
        self._chunked_last = False  # the last step read a chunk (the next one, if rows decode, reads none)
        self._lock = threading.Lock()
        self._cache: Any = None
        self._mask: torch.Tensor | None = None
        self._eos = lm.eos_ids
        self.device = input_device(self.model)  # input ids, masks and positions live here; the cache per layer
        self.forward_passes = 0
        self.last_step_rows = 0

    # -- intake ------------------------------------------------------------------------------

    def submit(self, request: GenerationRequest) -> None:
        """Queue a request once its question and length are checked (in the caller's thread)."""
        request.validate(self.lm)
        with self._lock:
            self.waiting.append(request)

    @property
    def idle(self) -> bool:
        with self._lock:
            return not self.rows and not self.waiting and not self.filling

    def _admit(self) -> list[FinishedAnswer]:
        """Move waiting requests into free slots, then spend this step's prefill budget.

        At most `prefill_chunk` prompt tokens are prefilled per step, so a long prompt is read
        in chunks between the running rows' tokens instead of in one pass that holds every
        other answer up; while rows decode, chunks take every other step. Prompts that fit the
        budget together are prefilled in one pass, as before; a longer one gets its own cache,
        filled chunk by chunk. Returns the admitted answers stopped before their prompt was read."""
        with self._lock:
            free = self.batch_size - len(self.rows) - len(self.filling)
            new = [self.waiting.popleft() for _ in range(min(free, len(self.waiting)))]
        self.filling.extend(self._row_for(r) for r in new)
        stopped = [row.finish("stopped") for row in self.filling if row.request.stop_requested]
        self.filling = [row for row in self.filling if row.finish_reason is None]
        if not self.filling:
            return stopped
        budget = max(1, self.prefill_chunk or settings.prefill_chunk_tokens())
        first = self.filling[0]
        if first.filled or len(first.prompt) > budget:
            # While rows decode, a chunk every other step: their tokens slow by half a chunk at most.
            self._chunked_last = not (self.rows and self._chunked_last)
            if self._chunked_last:
                self._prefill_chunk(first, budget)
            return stopped
        group, spent = [first], len(first.prompt)
        for row in self.filling[1:]:
            if row.filled or spent + len(row.prompt) > budget:
                break
            group.append(row)
            spent += len(row.prompt)
        self.filling = self.filling[len(group) :]
        self._prefill(group)
        return stopped

    def _row_for(self, request: GenerationRequest) -> _Row:
        lm = self.lm
        probe_layer = lm.check_layer(request.probe_layer if request.probe_layer is not None else lm.default_layer)
        layers = sorted(
            {lm.check_layer(x) for x in request.layers}
            | ({probe_layer} if request.probe is not None or not request.layers else set())
        )
        if request._prompt is None:
            request.validate(lm)
        assert request._prompt is not None
        return _Row(lm, request, request._prompt, probe_layer, layers)

    def _prefill_chunk(self, row: _Row, budget: int) -> None:
        """Feed the next `budget` prompt tokens of a long prompt into its own cache; after the
        last chunk its next-token logits are known and it joins the batch."""
        from transformers import DynamicCache

        if row.cache is None:
            row.cache = DynamicCache()
        start, end = row.filled, min(len(row.prompt), row.filled + budget)
        input_ids = torch.tensor([row.prompt[start:end]], dtype=torch.long, device=self.device)
        mask = torch.ones((1, end), dtype=torch.long, device=self.device)
        positions = torch.arange(start, end, dtype=torch.long, device=self.device).unsqueeze(0)
        with torch.inference_mode():
            out = self.model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=row.cache,
                use_cache=True,
                logits_to_keep=1,
            )
        self.forward_passes += 1
        row.filled = end
        if end == len(row.prompt):
            row.next_logits = out.logits[0, -1]
            cache, row.cache = row.cache, None
            self.filling.remove(row)
            self._merge(cache, mask, [row])

    def _prefill(self, rows: list[_Row]) -> None:
        from transformers import DynamicCache

        width = max(len(r.prompt) for r in rows)
        pad = self.lm.tokenizer.pad_token_id if self.lm.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, width - len(row.prompt) :] = torch.tensor(row.prompt)
            mask[i, width - len(row.prompt) :] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        with torch.inference_mode():
            out = self.model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        self.forward_passes += 1
        for i, row in enumerate(rows):
            row.next_logits = out.logits[i, -1]
        self._merge(cache, mask, rows)

    def _merge(self, cache: Any, mask: torch.Tensor, rows: list[_Row]) -> None:
        if self._cache is None or not self.rows:
            self._cache, self._mask, self.rows = cache, mask, rows
            return
        assert self._mask is not None
        width = max(self._mask.shape[1], mask.shape[1])
        for old, new in zip(self._cache.layers, cache.layers):
            old.keys = torch.cat([_left_pad(old.keys, width, 2), _left_pad(new.keys, width, 2)])
            old.values = torch.cat([_left_pad(old.values, width, 2), _left_pad(new.values, width, 2)])
        self._mask = torch.cat([_left_pad(self._mask, width, 1), _left_pad(mask, width, 1)])
        self.rows = self.rows + rows

    def _drop(self, keep: list[int]) -> None:
        """Keep only rows `keep` in the cache, then trim the columns no row uses any more."""
        assert self._mask is not None
        if len(keep) < len(self.rows):
            index = torch.tensor(keep, dtype=torch.long)
            for layer in self._cache.layers:  # with device_map="auto" the layers sit on several devices
                layer_index = index.to(layer.keys.device)
                layer.keys = layer.keys.index_select(0, layer_index)
                layer.values = layer.values.index_select(0, layer_index)
            self._mask = self._mask.index_select(0, index.to(self._mask.device))
            self.rows = [self.rows[i] for i in keep]
        if not self.rows:
            self._cache, self._mask = None, None
            return
        used = self._mask.any(dim=0).nonzero()
        first = int(used[0]) if len(used) else 0
        if first > 0:
            for layer in self._cache.layers:
                layer.keys = layer.keys[:, :, first:]
                layer.values = layer.values[:, :, first:]
            self._mask = self._mask[:, first:]

    # -- the step ------------------------------------------------------------------------------

    def step(self, cancel: CancelToken | None = None) -> list[FinishedAnswer]:
        """Admit waiting requests (and read at most one prefill chunk), sample one token per
        row, feed them; returns answers that ended. Then the `on_step` of every request that got
        tokens in this step, finished ones included."""
        finished = self._step(cancel)
        # Every row that got tokens either goes on (in `rows`) or ended (in `finished`).
        for request in [*(row.request for row in self.rows), *(answer.request for answer in finished)]:
            if request._stepped:
                request._stepped = False
                if request.on_step is not None:
                    request.on_step()
        return finished

    def _step(self, cancel: CancelToken | None) -> list[FinishedAnswer]:
        if cancel is not None and cancel.cancelled:  # no waiting or half-read prompt starts
            with self._lock:
                new, self.waiting = list(self.waiting), deque()
            finished = [row.finish("cancelled") for row in [*self.filling, *map(self._row_for, new)]]
            self.filling = []
        else:
            finished = self._admit()
        self.last_step_rows = len(self.rows)
        if not self.rows:
            return finished
        feed: list[tuple[int, int]] = []  # (row index, token id)
        logits = torch.stack([row.next_logits for row in self.rows])
        # Log-probs and entropy are the model's own distribution; the draw is from the masked one.
        logps, entropies = distribution_stats(logits)
        drawn, failed = constrain(logits, [row.request.constraint for row in self.rows])
        # One device-to-host copy per step for every row's greedy token and entropy, not one per row.
        greedy = drawn.argmax(dim=-1).tolist()
        entropy_values = entropies.tolist()
        for i, row in enumerate(self.rows):
            request = row.request
            if request.stop_requested:
                finished.append(row.finish("stopped"))
                continue
            if cancel is not None and cancel.cancelled:
                finished.append(row.finish("cancelled"))
                continue
            if i in failed:
                finished.append(row.finish(f"error: the output constraint failed: {failed[i]}"))
                continue
            decoding = request.decoding
            token_id = (
                greedy[i]
                if decoding.greedy
                else sample_token(drawn[i], decoding.temperature, decoding.top_p, row.generator)
            )
            if token_id in self._eos:
                finished.append(row.finish("eos"))
                continue
            if request.constraint is not None and not request.constraint.accept(token_id):
                finished.append(row.finish(f"error: the output constraint failed: {request.constraint.error}"))
                continue
            row.pending.append((token_id, 0.0, entropy_values[i], {}))
            feed.append((i, token_id))
        if feed:
            rows = torch.tensor([i for i, _ in feed], device=logps.device)
            tokens = torch.tensor([t for _, t in feed], device=logps.device)
            for (i, token_id), logprob in zip(feed, logps[rows, tokens].tolist()):
                self.rows[i].pending[-1] = (token_id, logprob, *self.rows[i].pending[-1][2:])
            self._record_alternatives(feed, logps)
            self._forward(feed)
        for row in self.rows:
            if row.finish_reason is None and row.fed >= row.request.decoding.max_new_tokens:
                finished.append(row.finish("length"))
        self._drop([i for i, row in enumerate(self.rows) if row.finish_reason is None])
        return finished

    def _record_alternatives(self, feed: list[tuple[int, int]], logps: torch.Tensor) -> None:
        """The top `top_logprobs` tokens of each row that asks, in one top-k over those rows."""
        want = [(i, self.rows[i].request.top_logprobs) for i, _ in feed if self.rows[i].request.top_logprobs > 0]
        if not want:
            return
        k = min(max(n for _, n in want), logps.shape[-1])
        index = torch.tensor([i for i, _ in want], device=logps.device)
        values, ids = logps[index].topk(k, dim=-1)
        for (i, n), row_values, row_ids in zip(want, values.tolist(), ids.tolist()):
            self.rows[i].request.alternatives.append(list(zip(row_ids[:n], row_values[:n])))

    def _forward(self, feed: list[tuple[int, int]]) -> None:
        """Feed one token to each row in `feed` (the others were finished this step)."""
        keep = [i for i, _ in feed]
        if len(keep) < len(self.rows):
            self._drop(keep)
        assert self._mask is not None
        ones = self._mask.new_ones((len(self.rows), 1))
        self._mask = torch.cat([self._mask, ones], dim=1)
        input_ids = torch.tensor([[token] for _, token in feed], dtype=torch.long, device=self.device)
        positions = torch.tensor([[row.length] for row in self.rows], dtype=torch.long, device=self.device)
        layers = sorted({layer for row in self.rows for layer in row.layers})
        with torch.inference_mode(), self.lm.tap.capture(layers) as captured:
            out = self.model(
                input_ids=input_ids,
                attention_mask=self._mask,
                position_ids=positions,
                past_key_values=self._cache,
                use_cache=True,
                logits_to_keep=1,
            )
        self.forward_passes += 1
        # Every row's state at each layer in one copy to the host (float32), then split per row.
        states = {layer: host_float(captured[layer][:, -1]) for layer in layers}
        for r, row in enumerate(self.rows):
            row.length += 1
            row.fed += 1
            row.next_logits = out.logits[r, -1]
            token_id, logprob, entropy, _ = row.pending[-1]
            hidden = {layer: states[layer][r].clone() for layer in row.layers}
            row.pending[-1] = (token_id, logprob, entropy, hidden)
            row.emit(row.decoder.push(token_id))


def generate_batched(
    lm: LoadedModel,
    requests: Iterable[GenerationRequest],
    *,
    batch_size: int,
    cancel: CancelToken | None = None,
    model: Any | None = None,
) -> Iterator[FinishedAnswer]:
    """Answer every request, refilling slots as answers end; yields each answer when it ends.

    After a cancel, rows in flight end as "cancelled" (yielded, so a caller can tell them
    apart from finished answers) and no waiting request starts."""
    engine = BatchEngine(lm, batch_size, model)
    source = iter(requests)
    exhausted = False
    while True:
        while not exhausted and len(engine.waiting) + len(engine.rows) + len(engine.filling) < batch_size:
            if cancel is not None and cancel.cancelled:
                exhausted = True
                break
            try:
                engine.submit(next(source))
            except StopIteration:
                exhausted = True
        if engine.idle:
            return
        yield from engine.step(cancel)


class SharedEngine:
    """One engine thread per model: live sessions submit requests and share its forward passes."""

    def __init__(self, lm: LoadedModel, batch_size: int, model: Any | None = None) -> None:
        self.engine = BatchEngine(lm, batch_size, model)
        self._wake = threading.Condition()
        self._callbacks: dict[int, Callable[[FinishedAnswer], None]] = {}
        self._thread = threading.Thread(target=self._loop, name="probelens-engine", daemon=True)
        self._thread.start()

    def submit(self, request: GenerationRequest, on_finish: Callable[[FinishedAnswer], None]) -> None:
        """Queue a request; `on_finish` runs on the engine thread when it ends (keep it short)."""
        with self._wake:
            self._callbacks[id(request)] = on_finish
            self.engine.submit(request)
            self._wake.notify()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while self.engine.idle:
                    self._wake.wait()
            try:
                done = self.engine.step()
            except Exception as exc:
                done = self._fail_all(exc)
            for answer in done:
                with self._wake:
                    callback = self._callbacks.pop(id(answer.request), None)
                if callback is not None:
                    callback(answer)

    def _fail_all(self, exc: Exception) -> list[FinishedAnswer]:
        """A failed step ends every row with reason "error"; the engine starts clean."""
        engine = self.engine
        failed = [
            FinishedAnswer(
                row.request,
                row.tokens,
                row.decoder.text,
                f"error: {type(exc).__name__}: {exc}",
                len(row.prompt),
                row.trace,
            )
            for row in [*engine.rows, *engine.filling]
        ]
        engine.rows, engine.filling, engine._cache, engine._mask = [], [], None, None
        return failed


_SHARED: dict[int, SharedEngine] = {}
_SHARED_LOCK = threading.Lock()


def shared_engine(lm: LoadedModel, batch_size: int | None = None, model: Any | None = None) -> SharedEngine:
    """The process's engine for this model, or for a LoRA probe's adapted copy of it (made on first use)."""
    key = id(model if model is not None else lm)
    with _SHARED_LOCK:
        engine = _SHARED.get(key)
        if engine is None:
            engine = SharedEngine(lm, batch_size or min(16, auto_batch_size(lm, 1024)), model)
            _SHARED[key] = engine
        return engine
