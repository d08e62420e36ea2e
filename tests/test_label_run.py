"""The `label` run against a scripted OpenAI-compatible judge (tests/support/judge_server.py):
valid output, the one retry, garbage, 429 with Retry-After, 5xx, timeouts, a cancel mid-run,
the cache, the bot account, and the CLI."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
from sqlalchemy import select

from core.base.errors import UserError
from core.base.progress import Cancelled, CancelToken
from core.base.types import Span
from core.orchestration.cli import main
from core.orchestration.label_run import LabelParams, run_label
from core.text.judging import output_token_limit
from core.text.references import parse_reference_text
from db.annotations import save_annotation_set, sets_for_generation, spans_of
from db.events import list_events
from db.judges import add_judge, save_instructions
from db.models import JudgeResult, JudgeStatus, User
from db.references import import_documents
from db.users import add_user, authenticate, list_users, reset_password, set_role, shown_role
from tests.support.judge_server import Reply, answer_of, completion, error, scripted_judge, spans_reply

ANSWERS = [
    "Lviv (German: Lemberg) is a city in Ukraine, founded in 1256.",
    "Tokyo is the capital of Japan and Kyoto was the capital before 1869.",
    "Paris is the capital of France.",
]


def _labels_for(answer: str) -> list[dict]:
    """What a good judge says: the capitalised names, first one Supported, the rest Not Supported."""
    words = re.findall(r"[A-Z]\w+", answer)
    return [
        {"text": w, "label": "Supported" if i == 0 else "Not Supported", "note": f"checked {w}", "evidence": []}
        for i, w in enumerate(dict.fromkeys(words))
    ]


def good(request: dict, _n: int) -> Reply:
    return spans_reply(_labels_for(answer_of(request)), prompt_tokens=1000, completion_tokens=100)


@pytest.fixture()
def team(sqlite_db, make_generation, monkeypatch):
    monkeypatch.setenv("PROBELENS_JUDGE_MAX_WAIT_SECONDS", "5")
    with sqlite_db.sessions() as session, session.begin():
        ids = [make_generation(session, text, dataset="facts").id for text in ANSWERS]
    sqlite_db.ids = ids
    return sqlite_db


def _judge(database, url: str, **options) -> None:
    options = {"concurrency": 2, "price_input_per_m": 2.0, "price_output_per_m": 10.0, **options}
    with database.sessions() as session, session.begin():
        add_judge(session, "scripted", base_url=url, model="m", **options)


def _results(database) -> list[JudgeResult]:
    with database.reading() as session:
        found = list(session.scalars(select(JudgeResult).order_by(JudgeResult.generation_id)))
        session.expunge_all()  # read after the session closes
        return found


def _bot_spans(database, generation_id: int) -> list[Span] | None:
    with database.reading() as session:
        for found in sets_for_generation(session, generation_id):
            owner = session.get(User, found.annotator_id) if found.annotator_id else None
            if owner is not None and owner.bot:
                return spans_of(found)
    return None


def test_valid_output_becomes_the_judge_accounts_set_with_notes_tokens_and_cost(team):
    with scripted_judge(good) as server:
        _judge(team, server.url)
        summary = run_label(team, LabelParams("facts", "scripted"))
    assert (summary.labelled, summary.failed, summary.cached, summary.unavailable) == (3, 0, 0, 0)
    assert (summary.input_tokens, summary.output_tokens) == (3000, 300)
    assert summary.cost == pytest.approx((3000 * 2.0 + 300 * 10.0) / 1e6)
    assert "no reference passages: the judge used its own knowledge" in summary.message()
    spans = _bot_spans(team, team.ids[0])
    assert [(ANSWERS[0][s.start : s.end], s.label, s.note) for s in spans] == [
        ("Lviv", "Supported", "checked Lviv"),
        ("German", "Not Supported", "checked German"),
        ("Lemberg", "Not Supported", "checked Lemberg"),
        ("Ukraine", "Not Supported", "checked Ukraine"),
    ]
    with team.reading() as session:
        events = [(e.user_id, e.detail) for e in list_events(session, action="annotation.judge")]
        users = {u.name: (u.id, shown_role(u)) for u in list_users(session)}
    assert len(events) == 3 and {user for user, _ in events} == {users["judge-scripted"][0]}
    assert all("judge scripted, instructions v0" in detail for _, detail in events)
    users = {name: role for name, (_, role) in users.items()}
    assert users == {"judge-scripted": "model"}
    request = server.requests[0]
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["schema"]["required"] == ["spans"]


def test_the_instructions_and_the_team_guidelines_are_sent(team):
    from db.guidelines import save as save_guidelines

    with team.sessions() as session, session.begin():
        admin = add_user(session, "boss", "password123", role="admin")
        save_guidelines(session, "Dates count as entities.", actor=admin, expected_version=0)
        save_instructions(session, "Be strict about cities.", actor=admin)
    with scripted_judge(good) as server:
        _judge(team, server.url)
        run_label(team, LabelParams("facts", "scripted", instructions=1))
    system = server.requests[0]["messages"][0]["content"]
    assert system.startswith("Be strict about cities.") and "Dates count as entities." in system


def test_an_unplaceable_span_gets_one_retry_with_the_error_told(team):
    def script(request: dict, n: int) -> Reply:
        if len(request["messages"]) == 2:  # the first try: a span that is not in the answer
            return spans_reply([{"text": "Atlantis", "label": "Not Supported"}])
        return good(request, n)

    with scripted_judge(script) as server:
        _judge(team, server.url, concurrency=1)
        summary = run_label(team, LabelParams("facts", "scripted"))
    assert summary.labelled == 3 and server.calls == 6
    retry = server.requests[1]["messages"]
    assert retry[2]["role"] == "assistant" and "Atlantis" in retry[2]["content"]
    assert "not found in the answer" in retry[3]["content"] and "'Atlantis'" in retry[3]["content"]


def test_garbage_twice_is_judge_failed_and_nothing_is_stored_as_labels(team):
    replies = iter(["not json at all", '{"spans": [{"text": "Lviv", "label": "Maybe"}]}'])

    def script(request: dict, n: int) -> Reply:
        if answer_of(request) == ANSWERS[0]:
            return completion(next(replies))
        return good(request, n)

    with scripted_judge(script) as server:
        _judge(team, server.url, concurrency=1)
        summary = run_label(team, LabelParams("facts", "scripted"))
    assert (summary.labelled, summary.failed) == (2, 1)
    assert _bot_spans(team, team.ids[0]) is None  # nothing partial
    failed = _results(team)[0]
    assert failed.status == JudgeStatus.FAILED and "unknown label 'Maybe'" in failed.reason
    assert f"answer {team.ids[0]}: judge failed" in summary.message()


def test_every_request_carries_the_token_limit_and_a_cut_reply_is_retried_then_failed(team):
    """A reply cut at max_tokens (finish_reason "length") is a failure of its own, even when its
    text parses: the retry says so, and a second cut marks the answer judge failed with it."""
    limit = output_token_limit()

    def script(request: dict, n: int) -> Reply:
        if answer_of(request) == ANSWERS[0]:  # a valid prefix, cut: whatever it holds is not used
            return completion('{"spans": []}', completion_tokens=limit, finish_reason="length")
        return good(request, n)

    with scripted_judge(script) as server:
        _judge(team, server.url, concurrency=1)
        summary = run_label(team, LabelParams("facts", "scripted"))
    assert (summary.labelled, summary.failed) == (2, 1)
    assert {r["max_tokens"] for r in server.requests} == {limit} and 4000 < limit <= 4096
    cut = [r for r in server.requests if answer_of(r) == ANSWERS[0]]
    assert len(cut) == 2
    assert f"cut at the length limit of {limit} tokens" in cut[1]["messages"][-1]["content"]
    failed = _results(team)[0]
    assert failed.status == JudgeStatus.FAILED
    assert failed.reason.startswith(f"judge failed: the answer was cut at the length limit of {limit} tokens")
    assert _bot_spans(team, team.ids[0]) is None


def test_an_endpoint_that_takes_only_max_completion_tokens_is_asked_with_it(team):
    """OpenAI's reasoning models refuse max_tokens by name: the same request goes again at once
    with max_completion_tokens, without spending one of the tries."""

    def script(request: dict, n: int) -> Reply:
        if "max_tokens" in request:
            return error(400, param="max_tokens", code="unsupported_parameter")
        return good(request, n)

    with scripted_judge(script) as server:
        _judge(team, server.url, concurrency=1)
        summary = run_label(team, LabelParams("facts", "scripted"))
    assert summary.labelled == 3 and server.calls == 6
    assert [sorted(k for k in r if k.startswith("max_")) for r in server.requests[:2]] == [
        ["max_tokens"],
        ["max_completion_tokens"],
    ]
    assert server.requests[1]["max_completion_tokens"] == output_token_limit()


def test_a_400_about_the_value_of_max_tokens_is_not_taken_for_the_parameter(team):
    """Our own serve refuses a max_tokens over its cap (param max_tokens, no unsupported_parameter
    code): that is the judge not answering, said as the server said it, not a switch of name."""

    def script(request: dict, n: int) -> Reply:
        return error(400, param="max_tokens", message="max_tokens must be between 1 and 1024")

    with scripted_judge(script) as server:
        _judge(team, server.url, concurrency=1)
        summary = run_label(team, LabelParams("facts", "scripted"))
    assert summary.unavailable == 3 and server.calls == 3
    assert "(HTTP 400: " in summary.message() and "max_tokens must be between 1 and 1024" in summary.message()


def test_a_judge_failure_is_asked_again_by_the_next_run_and_its_success_replaces_it(team):
    """The first run's judge fails on one answer (garbage twice); the next run asks again for that
    answer alone, stores its labels and says it retried one; a third run costs nothing."""
    broken = {"on": True}

    def script(request: dict, n: int) -> Reply:
        if broken["on"] and answer_of(request) == ANSWERS[0]:
            return completion("not json at all")
        return good(request, n)

    with scripted_judge(script) as server:
        _judge(team, server.url, concurrency=1)
        first = run_label(team, LabelParams("facts", "scripted"))
        assert (first.labelled, first.failed, first.retried) == (2, 1, 0)
        assert _bot_spans(team, team.ids[0]) is None
        calls = server.calls
        broken["on"] = False
        second = run_label(team, LabelParams("facts", "scripted"))
        assert (second.labelled, second.failed, second.cached, second.retried) == (1, 0, 2, 1)
        assert "2 from the cache, 1 retried after failing last time" in second.message()
        assert server.calls == calls + 1 and answer_of(server.requests[-1]) == ANSWERS[0]
        assert [(ANSWERS[0][s.start : s.end], s.label) for s in _bot_spans(team, team.ids[0])][:2] == [
            ("Lviv", "Supported"),
            ("German", "Not Supported"),
        ]
        rows = [r for r in _results(team) if r.generation_id == team.ids[0]]
        assert [(r.status, r.reason) for r in rows] == [(JudgeStatus.OK, None)]  # the failure is replaced
        third = run_label(team, LabelParams("facts", "scripted"))
        assert (third.cached, third.retried, third.input_tokens) == (3, 0, 0) and server.calls == calls + 1


def test_unmatched_spans_are_reported_on_the_run(team):
    def script(request: dict, n: int) -> Reply:
        if answer_of(request) == ANSWERS[2]:
            return spans_reply([{"text": "Paris", "label": "Supported"}, {"text": "Rome", "label": "Supported"}])
        return good(request, n)

    with scripted_judge(script) as server:
        _judge(team, server.url)
        summary = run_label(team, LabelParams("facts", "scripted"))
    assert summary.failed == 1 and [u["text"] for u in summary.unmatched] == ["Rome"]
    assert "1 unmatched span (first: answer" in summary.message() and "'Rome'" in summary.message()
    assert _results(team)[2].unmatched[0]["text"] == "Rome"


def test_429_waits_out_retry_after_then_succeeds(team):
    def script(request: dict, n: int) -> Reply:
        return error(429, {"Retry-After": "1"}) if n == 1 else good(request, n)

    with scripted_judge(script) as server:
        _judge(team, server.url, concurrency=1)
        summary = run_label(team, LabelParams("facts", "scripted"))
    assert summary.labelled == 3 and server.calls == 4
    assert server.times[1] - server.times[0] >= 0.95


def test_5xx_until_the_tries_run_out_leaves_the_answer_unjudged_and_uncached(team, monkeypatch):
    monkeypatch.setenv("PROBELENS_JUDGE_ATTEMPTS", "2")

    def script(request: dict, n: int) -> Reply:
        return error(503) if answer_of(request) == ANSWERS[1] else good(request, n)

    with scripted_judge(script) as server:
        _judge(team, server.url)
        summary = run_label(team, LabelParams("facts", "scripted"))
        assert (summary.labelled, summary.unavailable) == (2, 1)
        assert "did not answer after 2 tries (HTTP 503)" in summary.message()
        assert len(_results(team)) == 2  # not cached: the next run asks again
        calls = server.calls
        again = run_label(team, LabelParams("facts", "scripted"))
        assert (again.cached, again.unavailable) == (2, 1) and server.calls == calls + 2


def test_a_slow_judge_times_out_cleanly(team, monkeypatch):
    monkeypatch.setenv("PROBELENS_JUDGE_ATTEMPTS", "1")

    def script(request: dict, n: int) -> Reply:
        reply = good(request, n)
        reply.delay = 3.0 if answer_of(request) == ANSWERS[0] else 0.0
        return reply

    with scripted_judge(script) as server:
        _judge(team, server.url, timeout_s=1.0)
        started = time.monotonic()
        summary = run_label(team, LabelParams("facts", "scripted"))
    assert time.monotonic() - started < 3.0
    assert (summary.labelled, summary.unavailable) == (2, 1) and "timed out" in summary.message()


def test_requests_run_concurrently_up_to_the_judges_limit(team, make_generation):
    with team.sessions() as session, session.begin():
        for i in range(5):
            make_generation(session, f"Answer {i} names Berlin.", dataset="facts")
    lock, state = threading.Lock(), {"now": 0, "most": 0}

    def script(request: dict, n: int) -> Reply:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.3)
        with lock:
            state["now"] -= 1
        return good(request, n)

    with scripted_judge(script) as server:
        _judge(team, server.url, concurrency=3)
        assert run_label(team, LabelParams("facts", "scripted")).labelled == 8
    assert state["most"] == 3


def test_a_cancel_mid_run_keeps_what_is_done_and_a_rerun_costs_nothing(team):
    cancel = CancelToken()

    def script(request: dict, n: int) -> Reply:
        if n == 2:
            cancel.cancel()
        return good(request, n)

    with scripted_judge(script) as server:
        _judge(team, server.url, concurrency=1)
        with pytest.raises(Cancelled):
            run_label(team, LabelParams("facts", "scripted"), cancel=cancel)
        kept = _results(team)
        assert len(kept) == 2 and server.calls == 2
        assert _bot_spans(team, team.ids[1]) and _bot_spans(team, team.ids[2]) is None
        first = run_label(team, LabelParams("facts", "scripted"))
        assert (first.cached, first.labelled) == (2, 1) and server.calls == 3
        again = run_label(team, LabelParams("facts", "scripted"))
        assert (again.cached, again.labelled, again.input_tokens, again.cost) == (3, 0, 0, None)
        assert server.calls == 3


def test_only_answers_nobody_labelled(team):
    with team.sessions() as session, session.begin():
        ann = add_user(session, "ann", "password123")
        save_annotation_set(session, team.ids[0], [], owner=ann, expected_version=0, actor=ann)
    with scripted_judge(good) as server:
        _judge(team, server.url)
        summary = run_label(team, LabelParams("facts", "scripted", unlabelled_only=True))
        assert summary.answers == 2
        # the judge's own sets do not count as labelled
        assert run_label(team, LabelParams("facts", "scripted", unlabelled_only=True)).cached == 2


def test_passages_are_retrieved_and_cited_ids_kept(team):
    docs = parse_reference_text("# Lviv\n\nLviv was founded in 1256 by King Daniel.", "lviv.md")
    with team.sessions() as session, session.begin():
        import_documents(session, docs, collection="atlas", actor=None)

    def script(request: dict, n: int) -> Reply:
        content = request["messages"][1]["content"]
        ids = [int(part.split("]")[0]) for part in content.split("\n[")[1:]]
        spans = [{**s, "evidence": ids + [424242]} for s in _labels_for(answer_of(request))]
        return spans_reply(spans)

    with scripted_judge(script) as server:
        _judge(team, server.url)
        summary = run_label(team, LabelParams("facts", "scripted"))
    assert summary.with_passages == 1 and "own knowledge" not in summary.message()
    (lviv,) = [r for r in server.requests if answer_of(r) == ANSWERS[0]]  # requests arrive in any order
    shown = lviv["messages"][1]["content"]
    assert "EVIDENCE PASSAGES (cite them by id):\n[" in shown and "Lviv was founded in 1256 by King Daniel." in shown
    stored = _results(team)[0].spans
    assert stored[0]["evidence"] and 424242 not in stored[0]["evidence"]


def test_the_judges_account_cannot_sign_in(team):
    with scripted_judge(good) as server:
        _judge(team, server.url)
    with team.sessions() as session, session.begin():
        bot = session.scalar(select(User).where(User.bot.is_(True)))
        bot.password_hash = __import__("db.users", fromlist=["hasher"]).hasher.hash("knownpassword")
    with team.sessions() as session, session.begin(), pytest.raises(UserError, match="wrong user name or password"):
        authenticate(session, "judge-scripted", "knownpassword")
    with team.sessions() as session, session.begin():
        boss = add_user(session, "boss", "password123", role="admin")
        for change in (
            lambda: set_role(session, "judge-scripted", "admin", boss),
            lambda: reset_password(session, "judge-scripted", "newpassword1", boss),
        ):
            with pytest.raises(UserError, match="an LLM judge's account"):
                change()


def test_bad_judge_settings_get_one_message(team):
    with team.sessions() as session, session.begin():
        for kwargs, message in [
            ({"base_url": "ftp://x"}, "base URL"),
            ({"api_key_env": "sk-123 secret"}, "the \\*name\\* of an environment variable"),
            ({"concurrency": 0}, "concurrency"),
            ({"price_input_per_m": -1.0}, "input price"),
        ]:
            with pytest.raises(UserError, match=message):
                add_judge(session, "bad", **{"base_url": "http://127.0.0.1:1/v1", "model": "m", **kwargs})


def test_cli_judges_and_label_run_through_the_runs_machinery(team, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("DATABASE_URL", team.full_url)
    monkeypatch.setenv("JUDGE_TEST_KEY", "secret-key-123")
    with scripted_judge(good) as server:
        argv = ["--quiet", "judges", "add", "scripted", "--base-url", server.url, "--model", "m"]
        assert main([*argv, "--api-key-env", "JUDGE_TEST_KEY", "--price-input", "1", "--price-output", "2"]) == 0
        assert json.loads(capsys.readouterr().out)["account"] == "judge-scripted"
        (tmp_path / "rules.md").write_text("Label carefully.", encoding="utf-8")
        assert main(["--quiet", "judges", "instructions", "set", "--file", str(tmp_path / "rules.md")]) == 0
        assert json.loads(capsys.readouterr().out) == {"version": 1}
        assert main(["--quiet", "label", "--dataset", "facts", "--judge", "scripted"]) == 0
        run = json.loads(capsys.readouterr().out)
        assert run["status"] == "succeeded" and run["kind"] == "label"
        assert "3 labelled" in run["message"] and "cost 0.0036" in run["message"]
        assert run["params"]["instructions"] == 1
        assert main(["--quiet", "label", "--dataset", "facts", "--judge", "nobody"]) == 2
        assert "unknown judge 'nobody'" in capsys.readouterr().err
        monkeypatch.delenv("JUDGE_TEST_KEY")
        assert main(["--quiet", "label", "--dataset", "facts", "--judge", "scripted"]) == 2
        assert "reads its API key from JUDGE_TEST_KEY, which is not set" in capsys.readouterr().err
    assert server.calls == 3
    assert all("secret-key-123" not in json.dumps(r) for r in server.requests)
    assert main(["--quiet", "judges", "list"]) == 0
    listed = capsys.readouterr().out
    assert "JUDGE_TEST_KEY" in listed and "secret-key-123" not in listed


def test_a_worker_process_runs_it_and_a_cancel_through_the_row_keeps_what_is_done(team, isolated_cache):
    from core.orchestration.launcher import start_label
    from db.train_runs import request_cancel
    from tests.support.runs import finished, wait_for_run

    def slow(request: dict, n: int) -> Reply:
        reply = good(request, n)
        reply.delay = 1.5
        return reply

    with scripted_judge(slow) as server:
        _judge(team, server.url, concurrency=1)
        run_id = start_label(team, LabelParams("facts", "scripted"), None)
        wait_for_run(team, run_id, lambda _run: len(_results(team)) >= 1)
        with team.sessions() as session, session.begin():
            request_cancel(session, run_id, None)
        run = wait_for_run(team, run_id, finished)
        assert run.status == "cancelled"
        kept = len(_results(team))
        assert 1 <= kept < 3
        again = wait_for_run(team, start_label(team, LabelParams("facts", "scripted"), None), finished)
        assert again.status == "succeeded" and f"{kept} from the cache" in again.message
    assert len(_results(team)) == 3


def test_on_ray_a_label_run_holds_one_cpu_and_no_gpu():
    from core.orchestration.ray_cluster import ClusterShape, task_resources
    from core.orchestration.runs import RUN_KINDS
    from db.models import RunKind

    assert task_resources(RunKind.LABEL, ClusterShape(gpus=4, node_cpus=16, nodes=2)) == {"num_cpus": 1}
    assert RUN_KINDS[RunKind.LABEL].on_ray is RUN_KINDS[RunKind.LABEL].local  # it calls out: nothing to fan out


def test_on_both_databases_results_are_stored_and_a_rerun_is_free(any_db, make_generation):
    with any_db.sessions() as session, session.begin():
        ids = [make_generation(session, text, dataset="facts").id for text in ANSWERS]
        import_documents(
            session,
            parse_reference_text("# Tokyo\n\nTokyo is the capital of Japan.", "t.md"),
            collection="c",
            actor=None,
        )
    with scripted_judge(good) as server:
        _judge(any_db, server.url)
        assert run_label(any_db, LabelParams("facts", "scripted")).labelled == 3
        again = run_label(any_db, LabelParams("facts", "scripted"))
    assert again.cached == 3 and server.calls == 3 and again.with_passages == 1
    assert [r.generation_id for r in _results(any_db)] == ids
    assert [ANSWERS[1][s.start : s.end] for s in _bot_spans(any_db, ids[1])] == ["Tokyo", "Japan", "Kyoto"]
