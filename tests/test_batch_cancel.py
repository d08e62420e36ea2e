"""Batch generation in-process: the job on SQLite and PostgreSQL, cancel between and inside
answers (finished answers stay, the unfinished one is not stored), and model refusal before
any run row exists."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from core.base.errors import UserError
from core.base.progress import Cancelled, CancelToken
from core.orchestration.batch import BatchParams, check_model, run_batch
from core.orchestration.launcher import start_batch

PROMPTS = [
    "Who founded Lviv?",
    "Name a city in Japan.",
    "What is the capital of France?",
    "Tell me about Go.",
    "Describe the Andes.",
]


def _params(n: int, **kw) -> BatchParams:
    prompts = [[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}] for i in range(n)]
    return BatchParams.from_dict(
        {"prompts": prompts, "dataset": "batch", "max_new_tokens": 10, "temperature": 0.0, **kw}
    )


def _stored(database) -> list[tuple[str, str, int, str]]:
    """(dataset, split, token count, completion) of every stored answer, in id order."""
    from db.generations import trace_of
    from db.models import Generation

    with database.sessions() as session:
        rows = session.scalars(select(Generation).order_by(Generation.id)).all()
        return [(g.dataset.name, g.split, len(trace_of(g).token_ids), g.completion) for g in rows]


class CancelAfterTokens(CancelToken):
    """Set by the test itself once `arm()` was called and `after` more tokens were generated:
    a deterministic way to cancel in the middle of one answer."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.armed, self.reads = after, False, 0

    def arm(self) -> None:
        self.armed = True

    @property
    def cancelled(self) -> bool:  # TokenStream reads this once per token
        if self.armed:
            self.reads += 1
            if self.reads > self.after:
                self.cancel()
        return super().cancelled


def _answers_done(message: str) -> int:
    """The answer count a progress message gives ("2/5 answers · 31 tokens ...")."""
    return int(message.split("/", 1)[0])


def test_run_batch_stores_every_answer_on_both_databases(any_db, tiny_lm, isolated_cache):
    seen: list[tuple[int, int]] = []
    result = run_batch(
        any_db,
        tiny_lm,
        _params(3, split="validation"),
        progress=lambda stage, done, total, msg="": seen.append((_answers_done(msg), total)),
    )
    stored = _stored(any_db)
    assert result["answers"] == 3 and result["skipped"] == [] and result["probe_version"] is None
    assert [(d, s) for d, s, _n, _c in stored] == [("batch", "validation")] * 3
    assert all(1 <= n <= 10 for _d, _s, n, _c in stored)
    assert result["tokens"] == sum(n for _d, _s, n, _c in stored)
    assert seen[0] == (0, 3 * 10) and seen[-1] == (3, 3 * 10)  # total: the token budget, 10 per answer


@pytest.mark.parametrize("batch_size", [1, 2])
def test_cancel_inside_an_answer_keeps_the_finished_ones_and_drops_the_unfinished(
    sqlite_db, tiny_lm, isolated_cache, batch_size
):
    token = CancelAfterTokens(after=3)
    full = run_batch(sqlite_db, tiny_lm, _params(3, dataset="reference"))  # what uncut answers look like

    def progress(stage: str, done: int, total: int, msg: str = "") -> None:
        if _answers_done(msg) == 2:
            token.arm()  # cancel three steps into the answers still in flight

    with pytest.raises(Cancelled, match="2 answers kept, 3 prompts left to resume"):
        run_batch(sqlite_db, tiny_lm, _params(5, dataset="cut", batch_size=batch_size), progress=progress, cancel=token)
    cut = [row for row in _stored(sqlite_db) if row[0] == "cut"]
    reference = [row for row in _stored(sqlite_db) if row[0] == "reference"]
    assert full["answers"] == 3 and len(cut) == 2
    # the two kept answers are complete (identical to answers of the uncancelled greedy run), not truncated
    complete = {(n, c) for _d, _s, n, c in reference}
    assert all((n, c) in complete for _d, _s, n, c in cut)
    assert min(n for _d, _s, n, _c in reference) > 3  # every answer is longer than the cut, so cut ones were dropped


def test_cancel_between_answers_stops_before_the_next(sqlite_db, tiny_lm, isolated_cache):
    token = CancelToken()

    def progress(stage: str, done: int, total: int, msg: str = "") -> None:
        if _answers_done(msg) == 1:
            token.cancel()

    with pytest.raises(Cancelled):
        run_batch(sqlite_db, tiny_lm, _params(4, batch_size=1), progress=progress, cancel=token)
    assert len(_stored(sqlite_db)) == 1


def test_a_model_that_cannot_be_loaded_is_refused_before_any_run(sqlite_db, tmp_path, tiny_model_dir, isolated_cache):
    from db.models import TrainRun

    with pytest.raises(UserError, match="unknown model 'no-such-org/no-such-model'"):
        start_batch(sqlite_db, _params(1, model="no-such-org/no-such-model"), None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        start_batch(sqlite_db, _params(1, model=str(tmp_path / "empty")), None)
    with sqlite_db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(TrainRun)) == 0
    assert check_model("embedded").startswith("embedded:")
    assert check_model(str(tiny_model_dir)) == str(tiny_model_dir)


def test_the_same_greedy_batch_twice_stores_each_answer_once_and_says_so(sqlite_db, tiny_lm, isolated_cache):
    messages: list[str] = []
    first = run_batch(sqlite_db, tiny_lm, _params(3))
    again = run_batch(sqlite_db, tiny_lm, _params(3), progress=lambda stage, done, total, msg="": messages.append(msg))
    assert first["repeated"] == 0 and again["repeated"] == 3
    assert again["generation_ids"] == first["generation_ids"] and len(_stored(sqlite_db)) == 3
    assert messages[-1].endswith("3 already in the dataset")


def _prompt_numbers(database, dataset: str) -> list[int]:
    from db.models import Dataset, Generation

    with database.sessions() as session:
        extras = session.scalars(select(Generation.extra).join(Dataset).where(Dataset.name == dataset)).all()
        return sorted(e["batch"]["prompt"] for e in extras)


def test_a_cancelled_batch_says_what_it_kept_and_a_resume_answers_only_the_rest(
    sqlite_db, tiny_model_dir, tiny_lm, isolated_cache
):
    """The worker's cancelled row says how many answers it kept; resuming it answers only the
    prompts without an answer (each with its own number, so its own seed), never a finished one."""
    from dataclasses import replace

    from core.base.decoding import DecodingSettings
    from core.orchestration.batch import resume_params
    from db.train_runs import request_cancel
    from tests.support.runs import finished, wait_for_run

    n = 150
    params = _params(n, model=str(tiny_model_dir), max_new_tokens=200, batch_size=1)
    params.prompts = [[{"role": "user", "content": f"Question {i}: {PROMPTS[i % 5]}"}] for i in range(n)]  # unique
    run_id = start_batch(sqlite_db, params, None)
    # Any answer stored (the heartbeat may skip "1/150" on a fast machine), well before the 150th.
    wait_for_run(sqlite_db, run_id, lambda r: re.search(r"· [1-9]\d*/150 answers", r.message or "") or finished(r))
    with sqlite_db.sessions() as session, session.begin():
        request_cancel(session, run_id, None)
    run = wait_for_run(sqlite_db, run_id, finished, timeout=60)
    kept = len(_stored(sqlite_db))
    assert run.status == "cancelled" and 1 <= kept < n
    assert run.message == f"cancelled; {kept} answer{'s' if kept > 1 else ''} kept, {n - kept} prompts left to resume"

    resumed = resume_params(sqlite_db, run_id)
    answered = _prompt_numbers(sqlite_db, "batch")
    assert resumed.resumes == run_id and sorted(resumed.indices + answered) == list(range(n))
    assert resumed.prompts == [params.prompts[i] for i in resumed.indices]
    short = DecodingSettings(max_new_tokens=4, temperature=0.0)  # which prompts, not how long: kept quick
    run_batch(sqlite_db, tiny_lm, replace(resumed, decoding=short, batch_size=None), run_id=run_id + 1)
    assert _prompt_numbers(sqlite_db, "batch") == list(range(n))  # every prompt once: none answered twice
    with pytest.raises(UserError, match="nothing to resume"):
        resume_params(sqlite_db, run_id)
