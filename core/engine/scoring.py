"""Teacher-forced scoring of existing answers: the same per-token data as the stream, in one pass."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from core.base.errors import UserError
from core.base.types import TokenTrace
from core.engine.model import LoadedModel, host_float, input_device
from core.engine.stream import distribution_stats, offsets_from_ids, prompt_ids
from core.text.tokens import completion_offsets, nfc, nfc_trace

# ----------------------------------------------------------------------------- teacher forcing


@dataclass
class ScoredCompletion:
    """An existing answer after one teacher-forced forward pass: its per-token data (unscored)
    plus the hidden states the probes read."""

    trace: TokenTrace
    hidden: dict[int, torch.Tensor]  # layer -> [T, H], float32 on the CPU whatever the model's device
    text: str


def completion_tokens(lm: LoadedModel, completion: str, token_ids: Sequence[int] | None = None):
    """Token ids, texts and offsets of an answer: the stored ids when given, else re-tokenised."""
    if token_ids is not None:
        ids = [int(i) for i in token_ids]
        texts, offsets, decoded = offsets_from_ids(lm.tokenizer, ids)
        if decoded != completion:
            # Stored answers are NFC; the model may have written a form NFC changes.
            if nfc(decoded) != completion:
                raise UserError("the stored token ids do not decode to the answer text")
            mapped = nfc_trace(TokenTrace(ids, texts, offsets, [0.0] * len(ids), [0.0] * len(ids)))
            texts, offsets = mapped.texts, mapped.offsets
        return ids, texts, offsets

    ids, offsets = completion_offsets(lm.tokenizer, completion)
    return ids, _fix_texts(completion, offsets), offsets


def _fix_texts(text: str, offsets: Sequence[tuple[int, int]]) -> list[str]:
    """Pieces that concatenate to the text even where byte tokens share a character."""
    texts: list[str] = []
    covered = 0
    for i, (_start, end) in enumerate(offsets):
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
    device = input_device(lm.model)
    input_ids, mask = input_ids.to(device), mask.to(device)
    with torch.inference_mode(), lm.tap.capture(layers) as captured:
        # The base model plus the LM head on completion positions only: full-vocabulary
        # logits for every padded position would cost gigabytes on long batches.
        final = lm.model.base_model(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state
        head = lm.model.get_output_embeddings()
        results = []
        for r, (prompt, comp, texts, offsets, completion) in enumerate(rows):
            p, t = len(prompt), len(comp)
            # Logits at position i predict token i+1: the completion's are at p-1 .. p+t-2.
            logp, entropy = distribution_stats(head(final[r, p - 1 : p + t - 1]))
            chosen = (
                logp.gather(1, torch.tensor(comp, device=logp.device).unsqueeze(1)).squeeze(1) if t else torch.zeros(0)
            )
            results.append(
                ScoredCompletion(
                    trace=TokenTrace(comp, texts, offsets, chosen.tolist(), entropy.tolist()),
                    hidden={layer: host_float(captured[layer][r, p : p + t]) for layer in layers},
                    text=completion,
                )
            )
    return results
