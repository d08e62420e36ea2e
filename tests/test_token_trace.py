"""One per-token record: `TokenTrace` is what every producer returns and every consumer takes.

The types that add something to it (hidden states, a cache key, one token's position, the
browser's columns) hold a trace instead of copying its fields, and the trace's own methods
are the one way to grow, copy, score and serialise it.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from core.base.decoding import DecodingSettings
from core.base.types import Generation, TokenTrace
from core.components.heatmap_data import TokenView, heatmap_payload
from core.engine.activations import ActivationCache, GenerationActivations, extract_activations
from core.engine.batched import FinishedAnswer, GenerationRequest, generate_batched
from core.engine.bulk import answer_from
from core.engine.live import LiveGeneration
from core.engine.scoring import ScoredCompletion, score_batch
from core.engine.stream import StreamedToken, TokenStream

PER_TOKEN_FIELDS = {"token_ids", "texts", "offsets", "logprobs", "entropies", "scores", "starts", "ends", "ids"}
Q = [{"role": "user", "content": "Who founded Lviv?"}]


def _trace() -> TokenTrace:
    return TokenTrace([5, 6, 7], ["Ca", "fé", "!"], [(0, 2), (2, 4), (4, 5)], [-0.1, -0.2, -0.3], [1.0, 2.0, 3.0])


def test_wrappers_hold_a_trace_and_copy_none_of_its_fields():
    for cls in (ScoredCompletion, GenerationActivations, StreamedToken, FinishedAnswer, TokenView):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert "trace" in fields, cls
        assert not PER_TOKEN_FIELDS & set(fields), (cls, PER_TOKEN_FIELDS & set(fields))


def test_grow_copy_score_and_serialise():
    grown = TokenTrace.empty(scored=True)
    source = _trace().with_scores([0.25, 0.5, 0.75])
    for i in range(3):
        grown.append_from(source, i)
    assert grown == source
    unscored = TokenTrace.empty()
    unscored.append(1, "a", (0, 1), -0.5, 0.5, score=0.9)
    assert unscored.scores is None and unscored.token_ids == [1]
    scored_from_unscored = TokenTrace.empty(scored=True)
    scored_from_unscored.append_from(unscored, 0)
    assert math.isnan(scored_from_unscored.scores[0])  # an unscored token in a scored trace

    copy = source.copy()
    assert copy == source and copy.token_ids is not source.token_ids and copy.scores is not source.scores
    copy.texts.append("x")
    assert source.texts == ["Ca", "fé", "!"]
    assert source.copy(scored=False).scores is None and _trace().copy(scored=True).scores == []

    rescored = source.with_scores([0.1, 0.2, 0.3])
    assert rescored.scores == [0.1, 0.2, 0.3] and source.scores == [0.25, 0.5, 0.75]
    assert rescored.token_ids is source.token_ids  # the tokens are shared, not copied
    assert source.with_scores(None).scores is None

    wire = json.loads(json.dumps(source.to_dict()))
    assert wire["offsets"] == [[0, 2], [2, 4], [4, 5]]
    back = TokenTrace.from_dict(wire)
    assert back == source and isinstance(back.offsets[0], tuple)
    assert TokenTrace.from_dict(dataclasses.asdict(_trace())) == _trace()


def test_token_view_reads_the_trace_it_wraps():
    trace = _trace()
    view = TokenView.from_trace(trace)
    assert view.trace is trace and len(view) == 3
    assert (view.starts, view.ends, view.ids) == ([0, 2, 4], [2, 4, 5], [5, 6, 7])
    assert view.scores == [None, None, None] and view.logprobs == trace.logprobs
    scored = TokenView.from_trace(trace, [0.1, None, 0.9])
    assert scored.scores == [0.1, None, 0.9] and trace.scores is None  # the trace is not changed
    assert heatmap_payload(scored)["scores"] == [0.1, None, 0.9]
    plain = TokenView.from_lists(["a", "", "bc"], scores=[0.5, None, 1.0])
    assert (plain.starts, plain.ends, plain.ids) == ([0, 1, 1], [1, 1, 3], [0, 1, 2])
    assert plain.trace.offsets == [(0, 1), (1, 1), (1, 3)] and plain.logprobs == [None, None, None]
    with pytest.raises(ValueError, match="offsets"):
        TokenView(TokenTrace([1], ["a"], [], [0.0], [0.0]))


def test_streamed_tokens_are_positions_of_the_streams_trace(tiny_lm):
    stream = TokenStream(tiny_lm, Q, max_new_tokens=12)
    tokens = list(stream)
    assert tokens and all(t.trace is stream.trace for t in tokens)
    assert [t.index for t in tokens] == list(range(len(tokens)))
    t = stream.trace
    assert [x.token_id for x in tokens] == t.token_ids and [x.text for x in tokens] == t.texts
    assert [(x.start, x.end) for x in tokens] == t.offsets and [x.logprob for x in tokens] == t.logprobs
    assert [x.entropy for x in tokens] == t.entropies and t.scores is None and tokens[0].score is None
    assert "".join(t.texts) == stream.text


def test_the_engine_the_bulk_answer_and_a_live_session_return_the_same_trace(tiny_lm):
    decoding = DecodingSettings(max_new_tokens=12)
    alone = TokenStream(tiny_lm, Q, max_new_tokens=12)
    list(alone)
    (finished,) = generate_batched(tiny_lm, [GenerationRequest(Q, decoding, tag=0)], batch_size=2)
    assert finished.trace == alone.trace and all(t.trace is finished.trace for t in finished.tokens)
    answer = answer_from(finished, tiny_lm.model_id, with_scores=False)
    assert answer.trace is finished.trace  # handed on, not rebuilt
    live = LiveGeneration(tiny_lm, Q, decoding).start()
    live.join(60)
    snap = live.snapshot()
    assert snap.error is None and snap.trace == alone.trace and snap.trace is not live.snapshot().trace


def test_teacher_forcing_and_the_cache_return_the_streams_trace(tiny_lm, tmp_path):
    stream = TokenStream(tiny_lm, Q, max_new_tokens=10)
    list(stream)
    conversation = [*Q, {"role": "assistant", "content": stream.text}]
    (forced,) = score_batch(tiny_lm, [conversation], [1], [stream.trace.token_ids])
    assert forced.trace.token_ids == stream.trace.token_ids and forced.trace.offsets == stream.trace.offsets
    assert forced.trace.texts == stream.trace.texts and forced.trace.scores is None
    assert forced.trace.logprobs == pytest.approx(stream.trace.logprobs, abs=1e-4)
    gen = Generation(conversation, extra={"tokens": {"ids": stream.trace.token_ids}})
    cache = ActivationCache(tiny_lm, root=tmp_path)
    (cold,) = extract_activations(tiny_lm, [gen], [1], cache=cache)
    (warm,) = extract_activations(tiny_lm, [gen], [1], cache=cache)
    assert cold.trace == warm.trace and cold.trace.token_ids == stream.trace.token_ids
