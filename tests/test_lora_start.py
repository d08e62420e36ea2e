"""A LoRA run starts from the linear version (tiny model): checkpoint 0's head is the head the
linear kind fits on the same answers with the same settings, and the kept LoRA version scores
at least as well on the validation answers as that linear version."""

from __future__ import annotations

import pytest
import torch

from core.base.types import Generation
from core.probes.kinds import LINEAR, LORA, TrainOptions
from core.probes.metrics import level_metric
from core.probes.pipeline import item_scores, prepare
from tests.support.capitals import answers, run_retrain, seed

SPAN_MAX_AUC = level_metric("span_max", "auc")


def _options(epochs: int | None) -> TrainOptions:
    """A LoRA run's settings as the Probes page sends them; `epochs` are the LoRA passes."""
    return TrainOptions(lr=1e-3, epochs=epochs, seed=0, extra={"rank": 2, "kl_weight": 0.1})


def test_checkpoint_0_is_the_linear_kinds_head_on_the_same_answers(tiny_lm, isolated_cache):
    layer = tiny_lm.default_layer
    rows = answers()
    gens = [
        Generation([{"role": "user", "content": p}, {"role": "assistant", "content": c}], spans=s)
        for p, c, s, _ in rows
    ]
    items = prepare(tiny_lm, gens, [layer])
    train = [i for i, row in zip(items, rows) if row[3] == "train"]
    val = [i for i, row in zip(items, rows) if row[3] == "validation"]

    # one LoRA pass: the head must still be the linear version's (automatic epochs), not a one-epoch fit
    lora = LORA.train(tiny_lm, train, layer, _options(epochs=1), validation=val)
    linear = LINEAR.train(tiny_lm, train, layer, _options(epochs=None))

    start = lora.state.start
    assert start is not None
    assert torch.equal(start.linear.weight, linear.head.linear.weight)
    assert torch.equal(start.linear.bias, linear.head.linear.bias)
    kept = lora.metrics["checkpoints"]
    linear_auc = SPAN_MAX_AUC(item_scores(val, linear.head, layer))
    assert linear_auc is not None
    # checkpoint 0 scored through the adapted model (adapters that change nothing) is the linear score
    assert kept["scores"][0] == {"step": 0, "span_max_auc": pytest.approx(linear_auc, abs=1e-9)}
    assert kept["kept_auc"] >= kept["start_auc"]


def test_a_lora_version_never_scores_below_the_linear_version(
    sqlite_db, tiny_lm, isolated_cache, tmp_path, monkeypatch
):
    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    seed(sqlite_db)
    linear, _ = run_retrain(sqlite_db, tiny_lm, kind="linear")
    lora, _ = run_retrain(sqlite_db, tiny_lm, kind="lora", epochs=1, lora_rank=2, kl_weight=0.1)

    linear_auc = linear.metrics["span_max"]["auc"]
    kept = lora.metrics["checkpoints"]
    assert lora.metrics["n_validation"] == linear.metrics["n_validation"] > 0
    assert kept["start_auc"] == pytest.approx(linear_auc, abs=1e-9)
    assert lora.metrics["span_max"]["auc"] == pytest.approx(kept["kept_auc"], abs=1e-9)
    assert lora.metrics["span_max"]["auc"] >= linear_auc - 1e-9
    # the version records the settings its starting head was fitted with (epochs automatic)
    from core.orchestration.registry import load_version

    config = load_version(sqlite_db, tiny_lm, lora.probe_version).config
    assert config.train_config["epochs"] is None and config.lora["epochs"] == 1
