"""Batch generation: prompt files (every bad line listed), the job on a tiny model, and the
worker run with progress to the end and a cancel that keeps the finished answers."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from core.base.errors import UserError
from core.orchestration.batch import BadPromptsError, BatchParams, parse_prompts, run_batch
from core.orchestration.launcher import start_batch
from tests.support.capitals import run_retrain, seed
from tests.support.runs import wait_for_run

PROMPTS = [
    "Who founded Lviv?",
    "Name a city in Japan.",
    "Describe Zürich 😀.",
    "What is the capital of France?",
    "Tell me about Marie Curie.",
]


def test_prompt_files_text_and_jsonl():
    items = parse_prompts("\n".join(PROMPTS).encode() + b"\n\n", "p.txt")
    assert [i.messages for i in items] == [[{"role": "user", "content": p}] for p in PROMPTS]
    jsonl = "\n".join(
        [
            json.dumps({"prompt": "One?", "id": "a"}),
            json.dumps(
                {"conversation": [{"role": "user", "content": "Two?"}, {"role": "assistant", "content": "ignored"}]}
            ),
        ]
    )
    parsed = parse_prompts(jsonl, "p.jsonl")
    assert parsed[0].id == "a" and parsed[1].messages == [{"role": "user", "content": "Two?"}]


def test_a_bad_prompt_file_lists_every_bad_line_and_starts_nothing():
    text = "\n".join(
        [
            json.dumps({"prompt": "fine"}),
            "{not json",
            json.dumps({"prompt": ""}),
            json.dumps([1, 2]),
            json.dumps({"prompt": "also fine"}),
        ]
    )
    with pytest.raises(BadPromptsError) as caught:
        parse_prompts(text, "p.jsonl")
    assert [n for n, _ in caught.value.problems] == [2, 3, 4]
    assert "invalid JSON" in caught.value.problems[0][1] and "non-empty" in caught.value.problems[1][1]
    with pytest.raises(UserError, match="no prompts"):
        parse_prompts(b"\n \n", "p.txt")
    with pytest.raises(UserError, match="not UTF-8"):
        parse_prompts(b"\xff\xfe\x00bad", "p.txt")


@pytest.fixture()
def env(sqlite_db, isolated_cache, tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    monkeypatch.setenv("PROBELENS_MODEL", str(tiny_model_dir))
    return sqlite_db


def _params(n: int, **kw) -> BatchParams:
    return BatchParams.from_dict(  # the run row's flat form: decoding settings beside the rest
        {
            "prompts": [[{"role": "user", "content": p}] for p in (PROMPTS * (n // len(PROMPTS) + 1))[:n]],
            "dataset": "batch",
            **{"max_new_tokens": 12, "temperature": 1.0, **kw},
        }
    )


def count(database, model) -> int:
    with database.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_run_batch_stores_answers_with_tokens_and_active_probe_scores(env, tiny_lm):
    from core.orchestration.registry import promote
    from db.generations import get_generation, trace_of
    from db.models import Generation, Prediction

    seed(env)
    first, _ = run_retrain(env, tiny_lm)
    promote(env, first.probe_version, None)
    before = count(env, Generation)
    seen = []
    result = run_batch(
        env, tiny_lm, _params(5), progress=lambda stage, done, total, msg="": seen.append((done, total, msg))
    )
    assert result["answers"] == 5 and result["probe_version"] == first.probe_version
    # progress is the token budget spent: it only grows, ends full, and the message counts answers
    assert seen[-1][0] == seen[-1][1] and [d for d, *_ in seen] == sorted(d for d, *_ in seen)
    assert seen[-1][2].startswith("5/5 answers")
    assert count(env, Generation) == before + 5 and count(env, Prediction) == 5
    with env.sessions() as session:
        row = get_generation(session, result["generation_ids"][0])
        trace = trace_of(row)
        assert row.dataset.name == "batch" and row.split == "train" and row.source == "generated"
        assert 1 <= len(trace.token_ids) <= 12 and "".join(trace.texts) == row.completion


def test_bad_batch_settings_are_refused(env):
    for bad in ({"max_new_tokens": 0}, {"temperature": -1}, {"top_p": 0}, {"split": ""}):
        with pytest.raises(UserError):
            start_batch(env, _params(2, **bad), None)
    with pytest.raises(UserError, match="dataset name"):
        start_batch(env, BatchParams(prompts=[[{"role": "user", "content": "x"}]], dataset="  "), None)


def test_worker_batch_reaches_the_end_and_a_second_is_cancelled_midway(env):
    from db.models import Generation

    run_id = start_batch(env, _params(5), None)
    done = wait_for_run(env, run_id, lambda r: r.status not in ("queued", "running"))
    assert done.status == "succeeded", done.error
    assert done.progress == 1.0 and "generated 5 answers" in done.message
    assert count(env, Generation) == 5

    many = _params(300, max_new_tokens=200, temperature=1.0)
    many.dataset = "batch-slow"  # its own dataset: answers equal to the first batch's are not deduplicated away
    slow = start_batch(env, many, None)
    wait_for_run(env, slow, lambda r: r.message and re.search(r"\b([3-9]|\d\d)/300 answers", r.message))
    from db.train_runs import request_cancel

    with env.sessions() as session, session.begin():
        request_cancel(session, slow, None)
    run = wait_for_run(env, slow, lambda r: r.status != "running", timeout=30)
    stored = count(env, Generation) - 5
    # the cancelled run says exactly how many answers it kept (not those the model made
    # unstorable: the random tiny model sometimes writes a NUL at temperature 1); the answer
    # cut short by the cancel is not stored
    said = re.fullmatch(r"cancelled; (\d+) answers? kept, (\d+) prompts? left to resume", run.message)
    assert said is not None, run.message
    kept, left = int(said.group(1)), int(said.group(2))
    assert run.status == "cancelled" and 3 <= kept < 300 and stored == kept and kept + left == 300


def test_an_unstorable_answer_is_skipped_and_reported_not_fatal(env, tiny_lm):
    """Model output is untrusted. The tiny random model, sampling with these seeds, writes a
    NUL character into its third answer (found by this suite); it cannot be stored, so that
    answer is skipped and reported and the batch goes on."""
    from db.models import Generation

    result = run_batch(env, tiny_lm, _params(4, max_new_tokens=200, temperature=1.0))
    assert [n for n, _ in result["skipped"]] == [3]
    assert "NUL" in result["skipped"][0][1]
    assert result["answers"] == 3 and count(env, Generation) == 3
