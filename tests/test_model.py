"""core/model.py on a tiny random Llama: loading, streaming, teacher forcing, agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.base.errors import UserError
from core.engine.model import load_model
from core.engine.scoring import score_batch, score_conversation
from core.engine.stream import IncrementalDecoder, TokenStream, offsets_from_ids, prompt_ids
from core.probes.linear import LinearProbe

MESSAGES = [{"role": "user", "content": "Tell me about Lviv 🙂 and 東京."}]


def test_load_by_path_reports_shape(tiny_lm, tiny_model_dir):
    assert tiny_lm.num_layers == 4
    assert tiny_lm.hidden_size == 32
    assert tiny_lm.default_layer == 3  # floor(0.95 * 4)
    assert tiny_lm.model_id == str(tiny_model_dir)
    assert len(tiny_lm.tokenizer_hash) == 16


def test_unknown_model_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown model 'no-such-org/no-such-model'"):
        load_model("no-such-org/no-such-model")


def test_plain_prompt_without_chat_template(tiny_lm):
    ids = prompt_ids(tiny_lm, MESSAGES)
    assert tiny_lm.tokenizer.decode(ids) == MESSAGES[0]["content"] + "\n\n"


def test_chat_template_is_used_when_present(tiny_lm):
    template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    tiny_lm.tokenizer.chat_template = template
    try:
        text = tiny_lm.tokenizer.decode(prompt_ids(tiny_lm, MESSAGES))
    finally:
        tiny_lm.tokenizer.chat_template = None
    assert text == "<user>" + MESSAGES[0]["content"] + "<assistant>"


def test_stream_yields_complete_per_token_fields(tiny_lm):
    stream = TokenStream(tiny_lm, MESSAGES, max_new_tokens=30, temperature=1.0, seed=3, layers=[1, 3])
    tokens = list(stream)
    assert stream.finish_reason in {"eos", "length"}
    assert "".join(t.text for t in tokens) == stream.text
    for t in tokens:
        assert 0 <= t.start <= t.end <= len(stream.text)
        assert set(t.hidden) == {1, 3} and t.hidden[3].shape == (32,)
        assert t.logprob <= 0 and t.entropy >= 0
    # Offsets never go backwards and every character is covered by some token.
    covered = set()
    for t in tokens:
        covered.update(range(t.start, t.end))
    assert covered == set(range(len(stream.text)))


def test_sampling_is_reproducible_with_seed_and_greedy_is_deterministic(tiny_lm):
    def run(**kw):
        return [t.token_id for t in TokenStream(tiny_lm, MESSAGES, max_new_tokens=15, **kw)]

    assert run(temperature=0.9, seed=7) == run(temperature=0.9, seed=7)
    assert run(temperature=0.9, seed=7) != run(temperature=0.9, seed=8)
    assert run(temperature=0.0) == run(temperature=0.0)


def test_stop_ends_the_stream(tiny_lm):
    stream = TokenStream(tiny_lm, MESSAGES, max_new_tokens=50, temperature=1.0, seed=1)
    seen = []
    for token in stream:
        seen.append(token)
        if len(seen) == 3:
            stream.stop()
    assert stream.finish_reason == "stopped"
    assert len(seen) <= 3 + IncrementalDecoder.MAX_HELD


def test_max_new_tokens_bounds_the_answer(tiny_lm):
    stream = TokenStream(tiny_lm, MESSAGES, max_new_tokens=5, temperature=1.0, seed=2)
    tokens = list(stream)
    assert len(tokens) <= 5


@pytest.mark.parametrize("bad", [{"max_new_tokens": 0}, {"temperature": -1}, {"top_p": 0}])
def test_bad_settings_are_rejected(tiny_lm, bad):
    with pytest.raises(UserError):
        TokenStream(tiny_lm, MESSAGES, **bad)


def test_streaming_equals_teacher_forcing(tiny_lm):
    torch.manual_seed(0)
    probe = LinearProbe(tiny_lm.hidden_size)
    stream = TokenStream(tiny_lm, MESSAGES, max_new_tokens=40, temperature=1.0, seed=5, probe=probe)
    tokens = list(stream)
    conversation = MESSAGES + [{"role": "assistant", "content": stream.text}]
    forced = score_conversation(tiny_lm, conversation, [tiny_lm.default_layer], [t.token_id for t in tokens])
    forced_scores = probe.predict(forced.hidden[tiny_lm.default_layer])
    np.testing.assert_allclose(np.asarray(forced_scores), [t.score for t in tokens], atol=1e-5)
    np.testing.assert_allclose(forced.trace.logprobs, [t.logprob for t in tokens], atol=1e-4)
    np.testing.assert_allclose(forced.trace.entropies, [t.entropy for t in tokens], atol=1e-4)
    assert forced.trace.offsets == [(t.start, t.end) for t in tokens]


def test_batch_padding_does_not_change_results(tiny_lm):
    convs = [
        MESSAGES + [{"role": "assistant", "content": "Lviv was founded in 1256."}],
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Café 😀 東京 naïve résumé and more words here."},
        ],
    ]
    batched = score_batch(tiny_lm, convs, [1])
    for conv, item in zip(convs, batched):
        alone = score_conversation(tiny_lm, conv, [1])
        assert alone.trace.token_ids == item.trace.token_ids
        torch.testing.assert_close(alone.hidden[1], item.hidden[1], atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(alone.trace.logprobs, item.trace.logprobs, atol=1e-4)
        assert "".join(item.trace.texts) == conv[-1]["content"]


def test_offsets_from_ids_handle_split_characters(tiny_lm):
    text = "👨‍👩‍👧 东京 é"
    ids = tiny_lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    texts, offsets, decoded = offsets_from_ids(tiny_lm.tokenizer, ids)
    assert decoded == text
    assert "".join(texts) == text
    assert len(offsets) == len(ids)
    assert all(offsets[i][0] <= offsets[i + 1][0] for i in range(len(offsets) - 1))


def test_teacher_forcing_requires_assistant_last(tiny_lm):
    with pytest.raises(UserError, match="assistant"):
        score_conversation(tiny_lm, MESSAGES, [1])


def test_layer_out_of_range(tiny_lm):
    with pytest.raises(UserError, match="layers 0..3"):
        TokenStream(tiny_lm, MESSAGES, layers=[4])


def test_model_is_shared_safely_between_threads(tiny_lm):
    """Two threads streaming at once each see only their own hidden states."""
    import threading

    results: dict[int, list[int]] = {}

    def run(seed: int) -> None:
        results[seed] = [
            t.token_id for t in TokenStream(tiny_lm, MESSAGES, max_new_tokens=20, temperature=1.0, seed=seed)
        ]

    expected = {
        s: [t.token_id for t in TokenStream(tiny_lm, MESSAGES, max_new_tokens=20, temperature=1.0, seed=s)]
        for s in (1, 2)
    }
    threads = [threading.Thread(target=run, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected


def test_small_batch_linear_path_equals_torch_linear(tiny_lm):
    from core.engine.model import SMALL_BATCH_ROWS

    linear = tiny_lm.model.model.layers[0].mlp.up_proj
    assert linear.forward.__func__.__name__ == "_small_batch_linear"  # the CPU path is installed
    torch.manual_seed(0)
    for rows in (1, 2, 3, 7, SMALL_BATCH_ROWS, SMALL_BATCH_ROWS + 1):
        x = torch.randn(rows, 1, linear.in_features)
        expected = torch.nn.functional.linear(x, linear.weight, linear.bias)
        assert linear(x).shape == expected.shape
        assert torch.allclose(linear(x), expected, atol=1e-5)
