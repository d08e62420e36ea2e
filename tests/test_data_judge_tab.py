"""The Data page's *LLM judge* tab with AppTest on a real SQLite file: add a judge (its key
variable shown, never a key), save instructions, import references (a bad file stores nothing),
start a label run that a real worker process finishes against a scripted judge."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from core.base.types import Span
from tests.support.apptest import add_users, plain, sign_in
from tests.support.judge_server import scripted_judge, spans_reply


@pytest.fixture()
def env(app_database, make_generation):
    add_users(app_database, ("boss", "boss-password", "admin"))
    with app_database.sessions() as session, session.begin():
        make_generation(session, "Lviv is in Ukraine.", dataset="facts")
    return app_database


def _button(at, starts: str):
    return next(b for b in at.button if b.label.startswith(starts))


def test_the_judge_tab_configures_a_judge_and_runs_it(env, monkeypatch):
    from db.models import AnnotationSet, Passage, TrainRun, User

    monkeypatch.setenv("JUDGE_TAB_KEY", "sk-never-shown")
    with scripted_judge(lambda _r, _n: spans_reply([{"text": "Ukraine", "label": "Supported"}])) as server:
        at = sign_in("boss", "boss-password", "pages/data.py")
        assert not at.exception, at.exception
        at.text_input(key="judge-name").set_value("gpt")
        at.text_input(key="judge-url").set_value(server.url)
        at.text_input(key="judge-model").set_value("m")
        at.text_input(key="judge-env").set_value("JUDGE_TAB_KEY")
        _button(at, "Add judge").click().run()
        assert not at.exception and not at.error, at.error
        table = next(d.value for d in at.dataframe if "API key from" in d.value.columns)
        assert list(table["API key from"]) == ["JUDGE_TAB_KEY"] and list(table["account"]) == ["judge-gpt"]
        assert "sk-never-shown" not in str(table.to_dict())

        at.text_area(key="judge-instr-0").set_value("Check every city.").run()
        _button(at, "Save as a new version").click().run()
        assert at.text_area(key="judge-instr-1").value == "Check every city."

        at.file_uploader(key="ref-file").set_value(("bad.jsonl", b"{oops\n", "application/jsonl")).run()
        _button(at, "Import references").click().run()
        assert any("line 1: not valid JSON" in plain(e.value) for e in at.error), [e.value for e in at.error]
        with env.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Passage)) == 0
        at.file_uploader(key="ref-file").set_value(("lviv.md", b"# Lviv\n\nLviv is in Ukraine.", "text/markdown"))
        at.run()
        _button(at, "Import references").click().run()
        assert any("Imported 1 documents (1 passages)" in plain(s.value) for s in at.success)

        at.selectbox(key="label-dataset").set_value("facts")
        _button(at, "Start label run").click().run()
        assert not at.error and not at.exception, (at.error, at.exception)
        assert any("Label run" in t.value for t in at.toast), [m.value for m in at.markdown][-5:]
        deadline = time.time() + 120
        while True:
            with env.sessions() as session:
                run = session.scalar(select(TrainRun).where(TrainRun.kind == "label"))
                status, message, error = run.status, run.message, run.error
            if status in ("succeeded", "failed", "cancelled") or time.time() > deadline:
                break
            time.sleep(0.5)
        assert status == "succeeded", (status, error)
        assert "1 labelled" in message and server.calls == 1
        assert "Check every city." in server.requests[0]["messages"][0]["content"]
    with env.sessions() as session:
        bot = session.scalar(select(User).where(User.bot.is_(True)))
        stored = session.scalar(select(AnnotationSet).where(AnnotationSet.annotator_id == bot.id))
        assert [Span(s.start, s.end, s.label) for s in stored.spans] == [Span(11, 18, "Supported")]
