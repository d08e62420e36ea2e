"""The LLM judge's boundaries (#24): its API key never reaches the database, its account never
signs in, search text is never search syntax, and its notes reach the editor as text (the
browser half is tests/e2e/test_span_editor_browser.py::test_a_judges_suggestion_is_accepted_with_its_label_and_note)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from core.base.errors import UserError
from core.orchestration.cli import main
from core.text.references import parse_reference_text
from db.references import import_documents, search_passages
from db.users import login
from tests.support.judge_server import scripted_judge, spans_reply


def test_the_key_stays_in_the_environment_and_the_account_cannot_sign_in(sqlite_db, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", sqlite_db.full_url)
    monkeypatch.setenv("SECRET_JUDGE_KEY", "sk-live-0123456789")
    with scripted_judge(lambda _r, _n: spans_reply([])) as server:
        argv = ["--quiet", "judges", "add", "j", "--base-url", server.url, "--model", "m"]
        assert main([*argv, "--api-key-env", "SECRET_JUDGE_KEY"]) == 0
        assert main([*argv[:3], "k", *argv[4:], "--api-key-env", "sk-live-0123456789"]) == 2
        assert "the *name* of an environment variable" in capsys.readouterr().err
    dump = "\n".join(sqlite_db.engine.raw_connection().driver_connection.iterdump())
    assert "SECRET_JUDGE_KEY" in dump and "sk-live-0123456789" not in dump
    with sqlite_db.engine.begin() as conn:  # even with a password it knows, a model's account is refused
        from db.users import hasher

        conn.execute(text("UPDATE users SET password_hash = :h WHERE bot"), {"h": hasher.hash("known-password")})
    with pytest.raises(UserError, match="wrong user name or password"):
        login(sqlite_db, "judge-j", "known-password")


@pytest.mark.parametrize(
    "query", ['" OR 1=1', "passages_fts MATCH 'x'", "NEAR(a b, 1)", "title:x*", "^a", "\x00\x01", "a" * 5000, "'"]
)
def test_search_text_is_never_search_syntax(any_db, query):
    docs = parse_reference_text(json.dumps({"title": "t", "text": "Lviv was founded in 1256."}), "r.jsonl")
    with any_db.sessions() as session, session.begin():
        import_documents(session, docs, collection="c", actor=None)
    with any_db.reading() as session:
        assert isinstance(search_passages(session, query, 5), list)
        assert [h.title for h in search_passages(session, query + " Lviv", 5)] in ([], ["t"])
