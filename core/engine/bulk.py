"""Bulk generation through the batched engine: prompts in, finished answers out as they end.

Used by batch generation, the demo seed and `python -m core generate`. Progress counts
answers and tokens; its fraction is the token budget spent (a finished answer counts its
whole budget), so the bar moves from the first step and the ETA is honest from the start
instead of waiting for the first answers, which in a batch all end late.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from core.base.decoding import DecodingSettings
from core.base.progress import CancelToken, ProgressFn, report
from core.base.types import Generation, TokenTrace
from core.engine.batched import FinishedAnswer, GenerationRequest, Scorer, auto_batch_size, generate_batched
from core.engine.model import LoadedModel
from core.engine.stream import fit_prompt, prompt_ids
from core.text.tokens import nfc, nfc_trace

PROGRESS_EVERY_SECONDS = 0.5


@dataclass
class GeneratedAnswer:
    """One finished answer: `index` is its prompt's position; `hidden` is layer -> [T, H]."""

    index: int
    generation: Generation
    trace: TokenTrace
    finish_reason: str
    hidden: dict[int, torch.Tensor] = field(default_factory=dict)


def answer_from(finished: FinishedAnswer, model_id: str, with_scores: bool) -> GeneratedAnswer:
    tokens = finished.tokens
    trace = finished.trace if with_scores or finished.trace.scores is None else finished.trace.with_scores(None)
    trace = nfc_trace(trace)  # answers are stored and labelled in NFC
    layers = sorted(tokens[0].hidden) if tokens else list(finished.request.layers)
    hidden = {layer: torch.stack([t.hidden[layer] for t in tokens]) if tokens else torch.zeros(0) for layer in layers}
    conversation = [*finished.request.messages, {"role": "assistant", "content": nfc(finished.text)}]
    generation = Generation(conversation=conversation, model=model_id, extra={"finish_reason": finished.finish_reason})
    return GeneratedAnswer(int(finished.request.tag), generation, trace, finished.finish_reason, hidden)


def choose_batch_size(
    lm: LoadedModel,
    prompts: Sequence[Sequence[dict[str, str]]],
    max_new_tokens: int,
    override: int | None = None,
    kv_cache_mb: int | None = None,
) -> int:
    """`override` when given, else as many answers as the KV-cache budget holds."""
    if override is not None:
        return max(1, int(override))
    longest = max((len(prompt_ids(lm, p)) for p in prompts[:256]), default=0)
    kwargs: dict[str, Any] = {"kv_cache_mb": kv_cache_mb} if kv_cache_mb else {}
    return min(len(prompts) or 1, auto_batch_size(lm, longest + max_new_tokens, **kwargs))


def check_prompts(
    lm: LoadedModel, prompts: Sequence[Sequence[dict[str, str]]], max_new_tokens: int, indices: Sequence[int] | None
) -> None:
    """Every prompt fits (`fit_prompt`) before any is answered: one message naming the first
    that does not (prompt n counts from 1 in the whole job), and nothing generated."""
    for position, messages in enumerate(prompts):
        n = int(indices[position]) if indices is not None else position
        fit_prompt(lm, messages, max_new_tokens, what=f"prompt {n + 1}")


def bulk_requests(
    prompts: Sequence[Sequence[dict[str, str]]],
    settings: DecodingSettings,
    *,
    probe: Scorer | None = None,
    layers: Sequence[int] = (),
    on_token: Callable[[Any], Any] | None = None,
    indices: Sequence[int] | None = None,
) -> Iterator[GenerationRequest]:
    """The engine requests of a bulk job: prompt n (its index in the whole job) samples with
    seed `settings.seed + n` and is tagged n; `probe` (whole) scores every token."""
    if indices is not None and len(indices) != len(prompts):
        raise ValueError("indices must give one index per prompt")
    for position, messages in enumerate(prompts):
        n = int(indices[position]) if indices is not None else position
        yield GenerationRequest(
            list(messages),
            decoding=settings.for_prompt(n),
            probe=probe,
            probe_layer=probe.layer if probe is not None else None,
            layers=tuple(layers),
            on_token=on_token,
            tag=n,
        )


def generate_answers(
    lm: LoadedModel,
    prompts: Sequence[Sequence[dict[str, str]]],
    settings: DecodingSettings,
    *,
    probe: Scorer | None = None,
    layers: Sequence[int] = (),
    batch_size: int | None = None,
    kv_cache_mb: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    indices: Sequence[int] | None = None,
) -> Iterator[GeneratedAnswer]:
    """Answer every prompt, batched; yields each answer as it ends (not in prompt order).

    Prompt n samples with seed `settings.seed + n`: different samples per prompt, the same
    ones whatever the batch size. `indices` gives each prompt's n when these prompts are a
    shard of a larger list (a Ray shard), so a shard samples what the whole list would.
    Answers cut short by a cancel are not yielded. With `probe`, its model generates (a LoRA
    probe's adapted copy) and it scores every token."""
    total = len(prompts)
    budget = settings.max_new_tokens
    check_prompts(lm, prompts, budget, indices)
    size = choose_batch_size(lm, prompts, budget, batch_size, kv_cache_mb)
    state = {"answers": 0, "tokens": 0, "spent": 0, "flying": 0}
    last_report = [0.0]  # time.monotonic() of the last report

    def count_token(_token: Any) -> None:
        state["tokens"] += 1
        state["flying"] += 1
        now = time.monotonic()
        if now - last_report[0] >= PROGRESS_EVERY_SECONDS:
            last_report[0] = now
            _report()

    def _report() -> None:
        report(
            progress,
            "generate",
            state["spent"] + state["flying"],
            total * budget,
            f"{state['answers']}/{total} answers · {state['tokens']} tokens · batches of {size}",
        )

    requests = bulk_requests(prompts, settings, probe=probe, layers=layers, on_token=count_token, indices=indices)
    _report()
    for finished in generate_batched(
        lm, requests, batch_size=size, cancel=cancel, model=probe.model if probe is not None else None
    ):
        state["flying"] -= len(finished.tokens)
        if finished.finish_reason == "cancelled":
            continue
        yield answer_from(finished, lm.model_id, probe is not None)
        # Counted once the caller has it (stored, say), so the message never runs ahead.
        state["answers"] += 1
        state["spent"] += budget
        _report()
