"""Security, second round, item 5: one huge prompt stalls no other Generate user.

A question or pasted text past the limits (PROBELENS_MAX_PROMPT_TOKENS, the model's context,
the character caps) is refused with one message wherever it enters (live Generate, pasted
scoring, bulk generation, the CLI) and nothing runs; an allowed but long prompt is prefilled
in chunks between the other rows' tokens (PROBELENS_PREFILL_CHUNK_TOKENS), so a stream shared
with it keeps its pace. The tiny model's context is 1024 tokens (tests/conftest.py).
"""

from __future__ import annotations

import json
import statistics
import threading

import pytest
from sqlalchemy import func, select

from core.base.decoding import DecodingSettings
from core.base.errors import UserError
from core.engine.batched import generate_batched, shared_engine
from core.engine.live import LiveGeneration
from core.engine.stream import prompt_ids
from tests.support.apptest import answer_count, plain, sign_in, with_tiny_model_and_probe

CONTEXT = 1024  # max_position_embeddings of the tiny model
_TEXT = "The city of Lviv (German: Lemberg) was founded in 1256 by King Daniel of Galicia. "


def _question(lm, tokens: int) -> str:
    """A question whose prompt is exactly `tokens` tokens (cut from repeated text)."""
    text = _TEXT * (tokens // 8 + 8)
    low, high = 1, len(text)
    while low < high:  # the longest prefix whose prompt has at most `tokens` tokens
        mid = (low + high + 1) // 2
        if len(prompt_ids(lm, [{"role": "user", "content": text[:mid]}])) <= tokens:
            low = mid
        else:
            high = mid - 1
    question = text[:low]
    assert len(prompt_ids(lm, [{"role": "user", "content": question}])) == tokens
    return question


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# ----------------------------------------------------------------------------- refusals


def test_a_question_past_the_context_or_the_limits_is_refused_and_nothing_runs(tiny_lm, monkeypatch):
    engine = shared_engine(tiny_lm)
    passes = engine.engine.forward_passes
    over_context = _question(tiny_lm, CONTEXT - 100)  # fits alone, not with 160 new tokens
    with pytest.raises(UserError, match=r"too long for the model: 924 prompt tokens \+ 160 new tokens") as caught:
        LiveGeneration(tiny_lm, _user(over_context), DecodingSettings(max_new_tokens=160)).start()
    assert "\n" not in str(caught.value) and "context of 1,024 tokens" in str(caught.value)
    with pytest.raises(UserError, match="too long: 98,304 characters; at most 20,000"):
        LiveGeneration(tiny_lm, _user("x" * 98_304), DecodingSettings(max_new_tokens=4)).start()
    monkeypatch.setenv("PROBELENS_MAX_PROMPT_TOKENS", "100")
    with pytest.raises(UserError, match=r"too long: 200 tokens; at most 100 \(PROBELENS_MAX_PROMPT_TOKENS\)"):
        LiveGeneration(tiny_lm, _user(_question(tiny_lm, 200)), DecodingSettings(max_new_tokens=4)).start()
    assert engine.engine.forward_passes == passes and engine.engine.idle


def test_bulk_generation_refuses_an_over_long_prompt_before_answering_any(tiny_lm):
    from core.engine.bulk import generate_answers

    prompts = [_user("Hi"), _user(_question(tiny_lm, CONTEXT)), _user("Rome")]
    with pytest.raises(UserError, match=r"prompt 2 is too long for the model: 1,024 prompt tokens \+ 8 new"):
        list(generate_answers(tiny_lm, prompts, DecodingSettings(max_new_tokens=8)))
    from core.engine.batched import GenerationRequest

    long = GenerationRequest(_user(_question(tiny_lm, CONTEXT)), DecodingSettings(max_new_tokens=8))
    with pytest.raises(UserError, match="too long for the model"):
        list(generate_batched(tiny_lm, [long], batch_size=2))


def test_the_cli_refuses_an_over_long_prompt_with_one_line_and_writes_nothing(
    tmp_path, tiny_lm, tiny_model_dir, capsys, isolated_cache
):
    from core.orchestration.cli import main

    prompts = tmp_path / "prompts.jsonl"
    lines = [{"prompt": "Hi"}, {"prompt": _question(tiny_lm, CONTEXT - 10)}]
    prompts.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = tmp_path / "out.jsonl"
    args = ["generate", "--prompts", str(prompts), "--out", str(out), "--model", str(tiny_model_dir)]
    assert main(["--quiet", *args, "--max-new-tokens", "32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prompt 2 is too long for the model" in err[0], err
    assert not out.exists()


def test_a_batch_run_refuses_an_over_long_prompt_before_storing_any(sqlite_db, tiny_lm, isolated_cache):
    from core.orchestration.batch import BatchParams, run_batch
    from core.orchestration.launcher import start_batch
    from db.models import Generation, TrainRun

    prompts = [_user("Hi"), _user(_question(tiny_lm, CONTEXT - 4))]
    params = BatchParams(prompts, "batch", decoding=DecodingSettings(max_new_tokens=12))
    with pytest.raises(UserError, match=r"prompt 2 is too long for the model: 1,020 prompt tokens \+ 12 new"):
        run_batch(sqlite_db, tiny_lm, params)
    with pytest.raises(UserError, match="prompt 2 is too long: 20,001 characters; at most 20,000"):
        start_batch(sqlite_db, BatchParams([_user("Hi"), _user("y" * 20_001)], "batch"), None)
    with sqlite_db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Generation)) == 0
        assert session.scalar(select(func.count()).select_from(TrainRun)) == 0


@pytest.fixture()
def generate_env(app_database, monkeypatch, tmp_path, tiny_model_dir, tiny_lm, isolated_cache):
    """The tiny model as the server's model, with an active linear probe for it."""
    with_tiny_model_and_probe(app_database, monkeypatch, tmp_path, tiny_model_dir, tiny_lm)
    return app_database


def test_the_generate_page_refuses_an_over_long_question_or_pasted_answer_with_one_message(generate_env, tiny_lm):
    at = sign_in("boss", "boss-password", "pages/generate.py")
    at.chat_input[0].set_value(_question(tiny_lm, CONTEXT - 20)).run()  # + 160 new tokens > 1024
    assert not at.exception, at.exception
    assert len(at.error) == 1 and "is too long for the model" in plain(at.error[0].value)
    assert not at.chat_message and "live" not in at.session_state
    at.radio(key="gen-mode").set_value("Score a pasted conversation").run()
    at.text_area[0].input("What is the capital of Australia?")
    at.text_area[1].input(_TEXT * 40)  # ~3 400 characters, past the context in tokens
    next(b for b in at.get("form_submit_button") if b.label == "Score").click()
    at.run()
    assert not at.exception, at.exception
    assert [plain(e.value) for e in at.error][-1].startswith("the pasted conversation is too long for the model")
    assert len(at.error) == 1 and "pasted" not in at.session_state
    assert answer_count(generate_env) == 0


# ----------------------------------------------------------------------------- no starvation


def _per_token_seconds(produced_at: list[float], window: int = 16) -> float:
    """The median over windows of `window` tokens of the time per token (held-back byte tokens
    arrive together, so single gaps are too ragged to compare)."""
    rates = [(produced_at[i + window] - produced_at[i]) / window for i in range(0, len(produced_at) - window, window)]
    return statistics.median(rates)


def _stream(lm, tokens: int) -> list[float]:
    live = LiveGeneration(lm, _user("Tell me about Lviv"), DecodingSettings(max_new_tokens=tokens, temperature=0))
    live.start().join(120)
    snapshot = live.snapshot()
    assert not snapshot.running and live.finish_reason == "length", live.finish_reason
    return snapshot.produced_at


def _beside_long_prompts(lm, tokens: int, heavy: str) -> float:
    """Per-token time of a stream while another session asks `heavy` questions back to back."""
    stop, prefilled = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def other_session() -> None:
        try:
            while not stop.is_set():
                live = LiveGeneration(lm, _user(heavy), DecodingSettings(max_new_tokens=1))
                live.start().join(60)
                assert live.finish_reason in ("length", "eos"), live.error
                prefilled.set()
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)
            prefilled.set()

    thread = threading.Thread(target=other_session, daemon=True)
    thread.start()
    try:
        assert prefilled.wait(60)
        return _per_token_seconds(_stream(lm, tokens))
    finally:
        stop.set()
        thread.join(60)
        assert not errors, errors


def test_a_maximal_prompt_from_one_session_does_not_stall_another_sessions_stream(tiny_lm, monkeypatch):
    # A chunk about as costly as one decode step of this model (the setting is the operator's dial).
    monkeypatch.setenv("PROBELENS_PREFILL_CHUNK_TOKENS", "32")
    heavy = _question(tiny_lm, CONTEXT - 1)  # the longest prompt allowed with one new token
    tokens = 256
    _stream(tiny_lm, 32)  # warm-up
    solo, loaded = [], []
    for _round in range(3):  # interleaved, so a busy machine slows both sides alike
        solo.append(_per_token_seconds(_stream(tiny_lm, tokens)))
        loaded.append(_beside_long_prompts(tiny_lm, tokens, heavy))
    alone, beside = statistics.median(solo), statistics.median(loaded)
    assert beside <= 3 * alone, f"per token: {beside * 1000:.2f} ms beside the long prompts, {alone * 1000:.2f} ms solo"
