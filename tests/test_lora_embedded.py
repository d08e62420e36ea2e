"""A small LoRA probe on the embedded model: trained, saved, loaded, streamed, teacher-forced."""

from __future__ import annotations

import pytest

from core.base.decoding import DecodingSettings
from core.base.types import Generation
from tests.support.capitals import answers

pytestmark = pytest.mark.integration


def test_embedded_lora_probe_streams_exactly_what_teacher_forcing_scores(tmp_path, isolated_cache):
    from core.engine.batched import HeadOnLayer
    from core.engine.live import LiveGeneration
    from core.engine.model import get_model
    from core.probes.config import ProbeConfig
    from core.probes.lora import LoraSettings, lora_hidden, train_lora_probe
    from core.probes.lora_pipeline import load_lora_probe, save_lora_probe

    lm = get_model(None)
    layer = lm.default_layer
    gens = [
        Generation([{"role": "user", "content": p}, {"role": "assistant", "content": c}], spans=s)
        for p, c, s, _ in answers()[:8]
    ]
    settings = LoraSettings(rank=4, first_layer=layer - 2, batch_answers=8)
    result = train_lora_probe(lm, gens, layer, settings)
    folder = save_lora_probe(
        tmp_path / "lora",
        result,
        ProbeConfig(
            model_id=lm.model_id,
            tokenizer_hash=lm.tokenizer_hash,
            layer=layer,
            hidden_size=lm.hidden_size,
            kind="lora",
            lora=settings.to_dict(),
        ),
    )
    model, head, _config = load_lora_probe(lm, folder)
    messages = [{"role": "user", "content": "What is the capital of Peru?"}]
    live = LiveGeneration(
        lm, messages, DecodingSettings(max_new_tokens=16, temperature=0.0), probe=HeadOnLayer(head, layer, model)
    ).start()
    live.join(120)
    snap = live.snapshot()
    assert snap.error is None and snap.trace.token_ids
    conversation = [*messages, {"role": "assistant", "content": snap.text}]
    forced = head.predict(lora_hidden(lm, model, conversation, layer, snap.trace.token_ids)).tolist()
    assert snap.trace.scores == pytest.approx(forced, abs=1e-4)
