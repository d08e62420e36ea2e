"""The batched engine equals the lone stream and teacher forcing, whatever the batch."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from core.base.decoding import DecodingSettings
from core.base.progress import CancelToken
from core.engine.batched import (
    BatchEngine,
    GenerationRequest,
    auto_batch_size,
    generate_batched,
    kv_bytes_per_token,
    shared_engine,
)
from core.engine.scoring import score_conversation
from core.engine.stream import TokenStream
from core.probes.linear import LinearProbe

# Prompts of very different lengths (1 to ~60 tokens), so rows are padded very differently.
PROMPTS = [
    "Hi",
    "The capital of France is",
    "Paris is the capital of France and Berlin is the capital of Germany. " * 3,
    "A",
    "Tell me about the history of the city, its rivers, its bridges and its people",
    "Numbers: 1 2 3 4 5",
    "Rome",
    "Berlin is the capital of Germany, a country in Europe",
    "x " * 20,
    "Short one",
]


_PROBES: dict[int, LinearProbe] = {}


_DECODING = ("max_new_tokens", "temperature", "top_p", "seed")


def _decoding(kw: dict) -> tuple[DecodingSettings, dict]:
    """The decoding settings among keyword arguments, and the rest."""
    return DecodingSettings(**{k: kw[k] for k in _DECODING if k in kw}), {
        k: v for k, v in kw.items() if k not in _DECODING
    }


def _probe(lm) -> LinearProbe:
    if id(lm) not in _PROBES:
        torch.manual_seed(3)
        probe = LinearProbe(lm.hidden_size)
        torch.nn.init.normal_(probe.linear.weight, std=0.5)
        _PROBES[id(lm)] = probe
    return _PROBES[id(lm)]


def _request(prompt: str, probe, **kw) -> GenerationRequest:
    decoding, rest = _decoding(kw)
    return GenerationRequest([{"role": "user", "content": prompt}], decoding=decoding, probe=probe, **rest)


_ALONE: dict[tuple, tuple] = {}


def _alone(lm, prompt: str, probe, **kw):
    """The lone stream's answer (remembered: several tests compare with the same one)."""
    key = (id(lm), prompt, id(probe), tuple(sorted(kw.items())))
    if key not in _ALONE:
        stream = TokenStream(lm, [{"role": "user", "content": prompt}], probe=probe, **kw)
        _ALONE[key] = (list(stream), stream.finish_reason, stream.text)
    return _ALONE[key]


def _by_prompt(answers) -> dict[str, object]:
    return {a.request.messages[0]["content"]: a for a in answers}


@pytest.fixture(scope="module")
def embedded_lm():
    import os
    from pathlib import Path

    from core.engine.model import get_model

    repo = Path(__file__).resolve().parents[1]
    os.environ.setdefault("PROBELENS_MODEL_CACHE_DIR", str(repo / "data" / "cache" / "models"))
    return get_model(None)


def _check_equal_to_lone_stream(lm, batch_size: int, prompts: list[str], budget) -> None:
    probe = _probe(lm)
    answers = _by_prompt(
        generate_batched(
            lm, [_request(p, probe, max_new_tokens=budget(n)) for n, p in enumerate(prompts)], batch_size=batch_size
        )
    )
    assert set(answers) == set(prompts)
    for n, prompt in enumerate(prompts):
        answer = answers[prompt]
        tokens, reason, text = _alone(lm, prompt, probe, max_new_tokens=budget(n))
        assert answer.finish_reason == reason
        assert answer.text == text
        assert [t.token_id for t in answer.tokens] == [t.token_id for t in tokens]
        assert [(t.start, t.end, t.text) for t in answer.tokens] == [(t.start, t.end, t.text) for t in tokens]
        for ours, alone in zip(answer.tokens, tokens):
            assert ours.logprob == pytest.approx(alone.logprob, abs=1e-4)
            assert ours.entropy == pytest.approx(alone.entropy, abs=1e-4)
            assert ours.score == pytest.approx(alone.score, abs=1e-4)
        if answer.tokens:
            forced = score_conversation(
                lm,
                [{"role": "user", "content": prompt}, {"role": "assistant", "content": text}],
                [lm.default_layer],
                [t.token_id for t in answer.tokens],
            )
            scores = probe.predict(forced.hidden[lm.default_layer]).tolist()
            assert [t.score for t in answer.tokens] == pytest.approx(scores, abs=1e-4)
            assert [t.logprob for t in answer.tokens] == pytest.approx(forced.trace.logprobs, abs=1e-4)


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_greedy_batches_equal_the_lone_stream_and_teacher_forcing(tiny_lm, batch_size):
    _check_equal_to_lone_stream(tiny_lm, batch_size, PROMPTS, lambda n: 12 + 3 * n)


@pytest.mark.integration
@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_the_embedded_model_batched_equals_its_lone_stream(embedded_lm, batch_size):
    # five prompts from 1 to ~60 tokens; a few tokens each keeps the lone streams cheap
    prompts = [PROMPTS[i] for i in (0, 1, 2, 4, 7)]
    _check_equal_to_lone_stream(embedded_lm, batch_size, prompts, lambda n: 6 + 2 * n)


def test_a_seed_gives_the_same_sample_whatever_the_batch_and_neighbours(tiny_lm):
    settings = {"temperature": 0.9, "top_p": 0.95, "max_new_tokens": 16}
    alone = [_alone(tiny_lm, p, None, seed=40 + n, **settings)[0] for n, p in enumerate(PROMPTS[:6])]
    for batch_size in (2, 6):
        answers = _by_prompt(
            generate_batched(
                tiny_lm,
                [_request(p, None, seed=40 + n, **settings) for n, p in enumerate(PROMPTS[:6])],
                batch_size=batch_size,
            )
        )
        for n, prompt in enumerate(PROMPTS[:6]):
            assert [t.token_id for t in answers[prompt].tokens] == [t.token_id for t in alone[n]]
    # and different seeds do sample differently
    assert [t.token_id for t in alone[0]] != [
        t.token_id for t in _alone(tiny_lm, PROMPTS[0], None, seed=1, **settings)[0]
    ]


def test_finished_rows_are_refilled_so_the_batch_stays_full(tiny_lm):
    engine = BatchEngine(tiny_lm, batch_size=3)
    lengths = [2, 9, 4, 7, 3, 8]
    for n, length in enumerate(lengths):
        engine.submit(
            GenerationRequest([{"role": "user", "content": PROMPTS[n]}], DecodingSettings(max_new_tokens=length))
        )
    done, full_while_queued = [], []
    while not engine.idle:
        queued = len(engine.waiting) > 0
        done.extend(engine.step())
        if queued:
            full_while_queued.append(engine.last_step_rows == 3)
    assert len(done) == len(lengths)
    # While answers wait, every step runs three rows at once: a finished row's slot is refilled.
    assert full_while_queued and all(full_while_queued)
    assert engine.forward_passes < sum(lengths) + len(lengths)  # shared passes, not one per answer
    assert engine._cache is None and engine._mask is None  # nothing held after the last row ends


def test_stop_ends_one_answer_and_leaves_its_neighbours_alone(tiny_lm):
    probe = _probe(tiny_lm)
    requests = [_request(p, probe, max_new_tokens=20) for p in PROMPTS[:3]]
    seen: list[int] = []

    def stop_after_three(token) -> bool:
        seen.append(token.index)
        return token.index == 2

    requests[1].on_token = stop_after_three
    answers = _by_prompt(generate_batched(tiny_lm, requests, batch_size=3))
    stopped = answers[PROMPTS[1]]
    if stopped.finish_reason != "eos":
        assert stopped.finish_reason == "stopped" and len(stopped.tokens) == 3
    for prompt in (PROMPTS[0], PROMPTS[2]):
        tokens, reason, _ = _alone(tiny_lm, prompt, probe, max_new_tokens=20)
        assert [t.token_id for t in answers[prompt].tokens] == [t.token_id for t in tokens]
        assert answers[prompt].finish_reason == reason


def test_cancel_ends_rows_in_flight_and_starts_no_more(tiny_lm):
    cancel = CancelToken()
    out = []
    for answer in generate_batched(
        tiny_lm, [_request(p, None, max_new_tokens=4 + n) for n, p in enumerate(PROMPTS)], batch_size=2, cancel=cancel
    ):
        out.append(answer)
        cancel.cancel()
    reasons = [a.finish_reason for a in out]
    assert reasons[0] in ("eos", "length")
    assert len(out) <= 3 and all(r == "cancelled" for r in reasons[1:])


def test_batch_size_comes_from_the_kv_cache_budget(tiny_lm):
    per_token = kv_bytes_per_token(tiny_lm)
    assert per_token == 2 * 4 * 2 * 8 * 4  # K and V, 4 layers, 2 KV heads of 8 dims, float32
    assert auto_batch_size(tiny_lm, 100, kv_cache_mb=1) == (1024 * 1024 // per_token) // 100
    assert auto_batch_size(tiny_lm, 10**9, kv_cache_mb=1) == 1
    assert auto_batch_size(tiny_lm, 1, kv_cache_mb=1024) == 64


def test_bad_settings_are_refused_before_anything_runs(tiny_lm):
    engine = BatchEngine(tiny_lm, batch_size=2)
    with pytest.raises(Exception, match="top-p"):
        engine.submit(_request("Hi", None, top_p=0))
    assert engine.idle


def test_concurrent_sessions_share_the_engine_and_see_their_own_tokens(tiny_lm):
    probe = _probe(tiny_lm)
    engine = shared_engine(tiny_lm)
    results: dict[str, object] = {}
    streamed: dict[str, list[int]] = {p: [] for p in PROMPTS[:4]}
    done = threading.Event()

    def submit(prompt: str) -> None:
        request = _request(
            prompt, probe, max_new_tokens=15, on_token=lambda t, p=prompt: streamed[p].append(t.token_id)
        )

        def finish(answer) -> None:
            results[prompt] = answer
            if len(results) == 4:
                done.set()

        engine.submit(request, finish)

    passes = engine.engine.forward_passes
    threads = [threading.Thread(target=submit, args=(p,)) for p in PROMPTS[:4]]
    for t in threads:
        t.start()
    assert done.wait(60)
    for prompt in PROMPTS[:4]:
        tokens, reason, _ = _alone(tiny_lm, prompt, probe, max_new_tokens=15)
        assert streamed[prompt] == [t.token_id for t in tokens] == [t.token_id for t in results[prompt].tokens]
        assert [t.score for t in results[prompt].tokens] == pytest.approx([t.score for t in tokens], abs=1e-4)
    # Four answers of up to 15 tokens took fewer passes than running them one after another.
    total = sum(len(results[p].tokens) + 1 for p in PROMPTS[:4])
    assert engine.engine.forward_passes - passes < total
    time.sleep(0.05)
    assert engine.engine.idle


@pytest.mark.parametrize("question", ["", "   ", "\n\t "])
def test_an_empty_or_blank_question_is_refused_and_nothing_runs(tiny_lm, question):
    from core.base.errors import UserError
    from core.engine.live import LiveGeneration

    engine = shared_engine(tiny_lm)
    passes = engine.engine.forward_passes
    with pytest.raises(UserError, match="the question is empty"):
        LiveGeneration(tiny_lm, [{"role": "user", "content": question}]).start()
    with pytest.raises(UserError, match="the question is empty"):
        list(generate_batched(tiny_lm, [_request(question, None)], batch_size=2))
    assert engine.engine.forward_passes == passes and engine.engine.idle


def test_prompts_read_in_chunks_give_the_answers_of_one_pass(tiny_lm, monkeypatch):
    # Chunks of 7 tokens split most prompts (up to 162 tokens) into many passes beside decoding rows.
    monkeypatch.setenv("PROBELENS_PREFILL_CHUNK_TOKENS", "7")
    _check_equal_to_lone_stream(tiny_lm, 3, PROMPTS, lambda n: 10 + 2 * n)


def test_on_step_comes_once_a_step_after_every_rows_tokens_of_that_step(tiny_lm):
    engine = BatchEngine(tiny_lm, batch_size=3)
    log: list[tuple[str, int]] = []
    # The fourth waits for a slot, then is admitted and ends in the same step.
    for n, length in enumerate([3, 9, 6, 1]):
        engine.submit(
            _request(
                PROMPTS[n],
                None,
                max_new_tokens=length,
                on_token=lambda token, n=n: log.append(("token", n)),
                on_step=lambda n=n: log.append(("step", n)),
            )
        )
    steps, done = [], []
    while not engine.idle:
        log.clear()
        done.extend(engine.step())
        steps.append(list(log))
    assert len(done) == 4 and any(steps)
    assert any(("step", 3) in events for events in steps)
    for events in steps:
        got_tokens = {n for kind, n in events if kind == "token"}
        stepped = [n for kind, n in events if kind == "step"]
        # One on_step per answer that got tokens in the step (the step it ended in too), and
        # only once every row's tokens of that step are out.
        assert sorted(stepped) == sorted(got_tokens)
        assert all(kind == "step" for kind, _ in events[len(events) - len(stepped) :])
    assert sum(kind == "token" for events in steps for kind, _ in events) == sum(len(a.tokens) for a in done)
