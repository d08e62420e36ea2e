"""LoRA checkpoint selection with the tiny model: the kept state is the best-scoring checkpoint
on the validation answers, and a run whose training makes things worse ends with the head it
started from (checkpoint 0), adapters that change nothing, and the starting score."""

from __future__ import annotations

import pytest
import torch

from core.base.types import Generation
from core.probes.linear import LinearProbe, TrainConfig, train_probe
from core.probes.lora import LoraSettings, train_lora_probe
from core.probes.lora_pipeline import lora_item_scores, validation_scorer, with_token_ids
from core.probes.metrics import level_metric
from core.probes.pipeline import PreparedItem, prepare, training_examples
from core.probes.training_set import build_training_set
from tests.support.capitals import answers


@pytest.fixture(scope="module")
def split_items(tiny_lm) -> tuple[list[PreparedItem], list[PreparedItem], LinearProbe]:
    """(train items, validation items, the linear head fitted on train) for the capitals answers;
    every third answer is held out, so both sides hold every country, right and wrong."""
    gens = [
        Generation([{"role": "user", "content": p}, {"role": "assistant", "content": c}], spans=spans)
        for p, c, spans, _split in answers()
    ]
    items = prepare(tiny_lm, gens, [tiny_lm.default_layer], use_cache=False)
    train = [i for n, i in enumerate(items) if n % 3]
    val = [i for n, i in enumerate(items) if not n % 3]
    head, _ = train_probe(build_training_set(training_examples(train, tiny_lm.default_layer)), TrainConfig(seed=0))
    return train, val, head


def _auc(lm, result, items) -> float | None:
    return level_metric("span_max", "auc")(lora_item_scores(lm, result.model, result.head, items, lm.default_layer))


def test_the_kept_state_is_the_best_scoring_checkpoint(tiny_lm, split_items):
    train, val, head = split_items
    layer = tiny_lm.default_layer
    settings = LoraSettings(epochs=3, batch_answers=4, lr=1e-2, head_lr=5e-2, kl_weight=0.1, checkpoint_every=2)
    result = train_lora_probe(
        tiny_lm,
        [with_token_ids(i) for i in train],
        layer,
        settings,
        init_head=head,
        scorer=validation_scorer(tiny_lm, val, layer),
    )
    kept = result.checkpoints
    assert kept is not None
    steps = [s["step"] for s in kept["scores"]]
    assert steps == sorted(set(steps)) and steps[0] == 0 and steps[-1] == len(result.history)
    assert len(steps) >= 4
    best = max(s["span_max_auc"] for s in kept["scores"])
    first_best = next(s["step"] for s in kept["scores"] if s["span_max_auc"] == best)
    assert kept["kept_step"] == first_best and kept["kept_auc"] == best
    assert kept["kept_step"] > 0 and best > kept["scores"][0]["span_max_auc"]  # training helped here
    assert kept["gain_over_start"] == pytest.approx(best - kept["scores"][0]["span_max_auc"])
    # the returned model and head are that checkpoint's: scoring them again gives its AUC
    assert _auc(tiny_lm, result, val) == pytest.approx(best, abs=1e-6)


def test_a_run_that_makes_things_worse_ends_with_the_starting_head(tiny_lm, split_items):
    train, val, head = split_items
    layer = tiny_lm.default_layer
    # a learning rate far too large: every later checkpoint scores below the start, or diverges
    settings = LoraSettings(epochs=3, batch_answers=4, lr=0.5, head_lr=5.0, kl_weight=0.1, checkpoint_every=2)
    result = train_lora_probe(
        tiny_lm,
        [with_token_ids(i) for i in train],
        layer,
        settings,
        init_head=head,
        scorer=validation_scorer(tiny_lm, val, layer),
    )
    kept = result.checkpoints
    assert kept is not None
    start = kept["scores"][0]["span_max_auc"]
    later = kept["scores"][1:]
    assert later and all(s.get("diverged") or s["span_max_auc"] < start for s in later)  # it did get worse
    assert kept["kept_step"] == 0 and kept["kept_auc"] == start and kept["gain_over_start"] == 0.0
    assert torch.equal(result.head.linear.weight, head.linear.weight)
    assert torch.equal(result.head.linear.bias, head.linear.bias)
    lora_b = [p for n, p in result.model.named_parameters() if "lora_B" in n]
    assert lora_b and all(bool((p == 0).all()) for p in lora_b)  # the adapters change nothing again
    assert _auc(tiny_lm, result, val) == pytest.approx(start, abs=1e-6)
