"""LoRA probe training with the tiny model: it learns, a seed fixes it, a large KL weight keeps
generation unchanged, and the shared model is never touched."""

from __future__ import annotations

import pytest
import torch

from core.base.types import Generation
from core.probes.lora import LoraSettings, lora_hidden, train_lora_probe
from tests.support.capitals import answers


def _generations() -> list[Generation]:
    return [
        Generation([{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}], spans=spans)
        for prompt, completion, spans, _split in answers()
    ]


def test_training_reduces_the_probe_loss_and_leaves_the_shared_model_alone(tiny_lm):
    before = {k: v.clone() for k, v in tiny_lm.model.state_dict().items()}
    result = train_lora_probe(
        tiny_lm,
        _generations(),
        tiny_lm.default_layer,
        LoraSettings(epochs=8, batch_answers=8, lr=5e-3, head_lr=2e-2, kl_weight=0.1),
    )
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
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=lm.tokenizer.eos_token_id,
        )
    return out[0, ids.shape[1] :].tolist()


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


# --- a task a linear probe cannot read and one adapter can expose ---------------------------------------------

XOR_LETTERS = "BCDFGHJK"  # single tokens of the tiny tokenizer that never merge with each other


def _xor_model(tiny_tokenizer, directory):
    """A one-block Llama whose block 0 writes nothing to the residual stream (o_proj and
    down_proj are zero), so block 0's output is the token embedding itself. The eight letters
    sit on a circle in the plane of two random orthonormal directions u, v, at angles
    22.5° + k·45° (radii 1.0, 1.6, 0.7, 1.3, repeated); letter k+4 is letter k's antipode.
    A letter is hallucinated when its u and v coordinates have opposite signs (quadrants II
    and IV): the label is XOR(sign u, sign v). Returns (LoadedModel, {letter: label})."""
    import math

    from transformers import LlamaConfig, LlamaForCausalLM

    from core.engine.model import load_model

    torch.manual_seed(0)
    hidden = 32
    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=hidden,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.3,  # gate/up units visibly nonlinear
        eos_token_id=tiny_tokenizer.eos_token_id,
        bos_token_id=tiny_tokenizer.eos_token_id,
        pad_token_id=tiny_tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    labels = {}
    with torch.no_grad():
        block = model.model.layers[0]
        block.self_attn.o_proj.weight.zero_()
        block.mlp.down_proj.weight.zero_()
        basis, _ = torch.linalg.qr(torch.randn(hidden, 2))
        u, v = basis[:, 0], basis[:, 1]
        for k, letter in enumerate(XOR_LETTERS):
            angle, radius = math.pi / 8 + k * math.pi / 4, (1.0, 1.6, 0.7, 1.3)[k % 4]
            token = tiny_tokenizer.convert_tokens_to_ids(letter)
            model.model.embed_tokens.weight[token] = radius * (math.cos(angle) * u + math.sin(angle) * v)
            labels[letter] = int(math.cos(angle) * math.sin(angle) < 0)
    model.save_pretrained(directory)
    tiny_tokenizer.save_pretrained(directory)
    return load_model(str(directory)), labels


def _xor_answers(labels: dict[str, int], n: int, first: int, seed: int) -> list[Generation]:
    """Answers of 16 letters, each letter twice in a random order; every letter is its own span."""
    import random

    from core.base.types import Span

    rng = random.Random(seed)
    out = []
    for a in range(n):
        letters = list(XOR_LETTERS * 2)
        rng.shuffle(letters)
        text = "".join(letters)
        spans = [Span(i, i + 1, "Not Supported" if labels[c] else "Supported") for i, c in enumerate(text)]
        out.append(
            Generation(
                [{"role": "user", "content": f"Answer {first + a}."}, {"role": "assistant", "content": text}],
                spans=spans,
            )
        )
    return out


def _token_auc(scores) -> float:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    y = np.concatenate([s.labels for s in scores])
    p = np.concatenate([s.probe for s in scores])
    return float(roc_auc_score(y[y >= 0], p[y >= 0]))


def test_lora_beats_linear_on_a_task_the_linear_probe_cannot_read(tiny_tokenizer, tmp_path):
    """The label is XOR(sign u, sign v) of a token's embedding, and block L = 0 writes nothing,
    so the residual a probe reads at L is the embedding: four clusters ±u±v, the hallucinated
    ones on one diagonal. No linear head reads that. Every held-out answer holds each letter
    and its antipode equally often, so for any head w, b the scores w·h + b of each class are
    symmetric about b and the token AUC is 0.5 exactly (up to float rounding), whatever the
    head learned. The sign product is still computed inside block 0: its MLP's hidden units
    silu(gate·x)·(up·x) hold products of the u and v coordinates of x = RMSNorm(h). The base
    block discards them (down_proj = 0), but LoRA adapts down_proj by adding B·A to it, so
    the adapters can write such a product into the residual stream, where the head reads it.
    """
    from core.probes.linear import TrainConfig, train_probe
    from core.probes.lora_pipeline import lora_item_scores, with_token_ids
    from core.probes.pipeline import item_scores, prepare, training_examples
    from core.probes.training_set import build_training_set

    lm, labels = _xor_model(tiny_tokenizer, tmp_path / "xor-llama")
    assert sorted(labels.values()) == [0] * 4 + [1] * 4
    train = prepare(lm, _xor_answers(labels, 32, 0, seed=1), [0], use_cache=False)
    held_out = prepare(lm, _xor_answers(labels, 16, 1000, seed=2), [0], use_cache=False)
    # one token per letter, and block 0's output is exactly the embedding (the premise above)
    embed = lm.model.model.embed_tokens.weight
    for item in held_out[:3]:
        assert len(item.acts.trace.token_ids) == 16
        assert torch.allclose(
            torch.as_tensor(item.acts.hidden[0]).float(), embed[list(item.acts.trace.token_ids)], atol=1e-3
        )

    # the linear probe, fitted by the project's own path (as `train` and the retrain run fit it)
    linear, _history = train_probe(build_training_set(training_examples(train, 0)), TrainConfig(seed=0))
    linear_auc = _token_auc(item_scores(held_out, linear, 0))

    # the LoRA probe, started from that head as the retrain run starts it; no KL term (only the probe matters here)
    settings = LoraSettings(
        rank=4, alpha=8, dropout=0.0, kl_weight=0.0, lr=1e-2, head_lr=1e-2, epochs=4, batch_answers=8, seed=0
    )
    lora = train_lora_probe(lm, [with_token_ids(i) for i in train], 0, settings, init_head=linear)
    lora_auc = _token_auc(lora_item_scores(lm, lora.model, lora.head, held_out, 0))

    assert abs(linear_auc - 0.5) < 0.05, linear_auc
    assert lora_auc > 0.95 and lora_auc > linear_auc + 0.4, (linear_auc, lora_auc)
