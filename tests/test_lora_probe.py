"""LoRA probe training with the tiny model: it learns, a seed fixes it, a large KL weight keeps
generation unchanged, and the shared model is never touched."""
from __future__ import annotations

import pytest
import torch

from core.base.types import Generation
from core.probes.lora import LoraSettings, lora_hidden, train_lora_probe
from tests.support.capitals import answers


def _generations() -> list[Generation]:
    return [Generation([{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}],
                       spans=spans) for prompt, completion, spans, _split in answers()]


def test_training_reduces_the_probe_loss_and_leaves_the_shared_model_alone(tiny_lm):
    before = {k: v.clone() for k, v in tiny_lm.model.state_dict().items()}
    result = train_lora_probe(tiny_lm, _generations(), tiny_lm.default_layer,
                              LoraSettings(epochs=8, batch_answers=8, lr=5e-3, head_lr=2e-2, kl_weight=0.1))
    per_epoch = len(result.history) // 8
    first = sum(h["probe_loss"] for h in result.history[:per_epoch]) / per_epoch
    last = sum(h["probe_loss"] for h in result.history[-per_epoch:]) / per_epoch
    assert last < 0.7 * first, (first, last)
    after = tiny_lm.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # adapters live on a copy
    assert not any("lora" in name for name, _ in tiny_lm.model.named_modules())


def test_a_fixed_seed_gives_an_identical_probe(tiny_lm):
    settings = LoraSettings(epochs=1, batch_answers=8, seed=7)
    one = train_lora_probe(tiny_lm, _generations(), 2, settings)
    two = train_lora_probe(tiny_lm, _generations(), 2, LoraSettings(epochs=1, batch_answers=8, seed=7))
    assert torch.equal(one.head.linear.weight, two.head.linear.weight)
    adapters_one = {k: v for k, v in one.model.state_dict().items() if "lora_" in k}
    adapters_two = {k: v for k, v in two.model.state_dict().items() if "lora_" in k}
    assert adapters_one and all(torch.equal(adapters_one[k], adapters_two[k]) for k in adapters_one)
    # and the adapted model reads block L differently from the base model once trained
    conversation = _generations()[0].conversation
    assert lora_hidden(tiny_lm, one.model, conversation, 2).shape[1] == tiny_lm.hidden_size


def _greedy(model, lm, prompt: str, n: int = 12) -> list[int]:
    from core.engine.stream import prompt_ids

    ids = torch.tensor([prompt_ids(lm, [{"role": "user", "content": prompt}])])
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                             min_new_tokens=n, do_sample=False, pad_token_id=lm.tokenizer.eos_token_id)
    return out[0, ids.shape[1]:].tolist()


@pytest.fixture(scope="module")
def peaked_lm(tiny_model_dir):
    """The tiny model with a sharp output layer: a random model's next-token logits are so flat
    (top-2 gap ~0.02) that any change flips greedy choices; this one decides like a trained one."""
    from core.engine.model import load_model

    lm = load_model(str(tiny_model_dir))
    with torch.no_grad():
        lm.model.lm_head.weight.mul_(40.0)
    return lm


def test_a_large_kl_weight_keeps_the_base_models_greedy_tokens(peaked_lm):
    prompts = ["What is the capital of France?", "Tell me about Japan.", "Name a river."]
    settings = {"epochs": 3, "batch_answers": 8, "lr": 1e-4, "head_lr": 1e-2}
    kept = train_lora_probe(peaked_lm, _generations(), 3, LoraSettings(kl_weight=1000.0, **settings))
    free = train_lora_probe(peaked_lm, _generations(), 3, LoraSettings(kl_weight=0.0, **settings))
    assert all(_greedy(kept.model, peaked_lm, p) == _greedy(peaked_lm.model, peaked_lm, p) for p in prompts)
    # without the KL term the adapters drift further from the frozen model
    assert free_kl(kept, peaked_lm) < free_kl(free, peaked_lm)


def free_kl(result, lm) -> float:
    from core.probes.lora import _batch, kl_to_frozen

    batch = _batch(lm, _generations()[:8], 1.0)
    with torch.no_grad():
        logits = result.model(input_ids=batch.input_ids, attention_mask=batch.mask, use_cache=False).logits
        return float(kl_to_frozen(result.model, batch, logits))
