"""Reference documents for the LLM judge: parsing, storage, full-text search on SQLite (FTS5) and
PostgreSQL (tsvector), hostile queries, the CLI, and migration 0007 both ways."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import inspect, text

from core.base.errors import UserError
from core.orchestration.cli import main
from core.text.formats import ServerPath
from core.text.references import (
    MAX_PASSAGE_CHARS,
    entity_queries,
    fts_query,
    parse_reference_text,
    read_references,
    split_passages,
)
from db.migrate import current_revision, downgrade, upgrade
from db.references import import_documents, list_collections, passages_by_id, search_passages

LVIV = "# Lviv\n\nLviv (German: Lemberg) is a city in western Ukraine.\n\nIt was founded in 1256 by King Daniel."
JSONL = "\n".join(
    json.dumps(d)
    for d in (
        {"title": "Tokyo", "text": "Tokyo is the capital of Japan.", "url": "https://example.org/tokyo"},
        {"title": "Paris", "text": "Paris is the capital of France. The Eiffel Tower opened in 1889."},
    )
)
HOSTILE = ['"', "AND OR NOT", "NEAR(a b", "text:Lviv", "*", "Lviv*", "^Lviv", "(", "' OR 1=1 --", "\x00", "ʼ", ""]


def test_markdown_plain_and_jsonl_become_titled_documents_of_passages():
    (md,) = parse_reference_text(LVIV, "lviv.md")
    assert md.title == "Lviv" and md.source == "lviv.md" and md.url is None
    assert md.passages == (
        "# Lviv\nLviv (German: Lemberg) is a city in western Ukraine.\nIt was founded in 1256 by King Daniel.",
    )
    (txt,) = parse_reference_text("Just text.", "notes.txt")
    assert txt.title == "notes"
    tokyo, paris = parse_reference_text(JSONL, "cities.jsonl")
    assert (tokyo.title, tokyo.url, paris.url) == ("Tokyo", "https://example.org/tokyo", None)


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ('{"title": "x"}', "a.jsonl", 'line 1: "text" must be a string'),
        ("not json", "a.jsonl", "line 1: not valid JSON"),
        ('{"title": "", "text": "t"}', "a.jsonl", '"title" must be a non-empty string'),
        ('{"title": "t", "text": "x", "url": "javascript:alert(1)"}', "a.jsonl", '"url" must be an http(s) address'),
        ("   \n\n ", "a.md", "the document has no text"),
        ("text", "a.pdf", "reference files must be"),
    ],
)
def test_bad_reference_files_get_one_message(content, name, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_reference_text(content, name)


def test_passages_are_bounded_and_keep_every_word():
    body = "\n\n".join(" ".join(f"w{p}x{i}." for i in range(300)) for p in range(4))
    passages = split_passages(body)
    assert len(passages) > 4 and all(0 < len(p) <= MAX_PASSAGE_CHARS for p in passages)
    assert " ".join(passages).split() == body.split()
    assert split_passages("x" * 3000) == ["x" * MAX_PASSAGE_CHARS, "x" * MAX_PASSAGE_CHARS, "x" * 600]


def test_fts_query_quotes_every_word_and_entities_are_found():
    assert fts_query('NEAR(a "b") OR c*') == '"NEAR" AND "a" AND "b" AND "OR" AND "c"'
    assert fts_query("*** ()") == ""
    assert entity_queries("Lviv was founded in 1256 by King Daniel of Galicia.") == [
        "Lviv",
        "in 1256",
        "King Daniel of Galicia",
    ]


def test_a_typed_path_is_read_only_inside_the_import_root(tmp_path, monkeypatch):
    root = tmp_path / "imports"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "lviv.md").write_text(LVIV, encoding="utf-8")
    (root / "refs" / "cities.jsonl").write_text(JSONL, encoding="utf-8")
    (tmp_path / "secret.md").write_text("# Secret\n\nno", encoding="utf-8")
    monkeypatch.setenv("PROBELENS_IMPORT_ROOT", str(root))
    assert [d.title for d in read_references(ServerPath("refs"))] == ["Tokyo", "Paris", "Lviv"]
    with pytest.raises(UserError, match="inside the server's import folder"):
        read_references(ServerPath(str(tmp_path / "secret.md")))
    with pytest.raises(UserError, match="inside the server's import folder"):
        read_references(ServerPath("../secret.md"))


def _import(database) -> dict:
    docs = parse_reference_text(LVIV, "lviv.md") + parse_reference_text(JSONL, "cities.jsonl")
    with database.sessions() as session, session.begin():
        return import_documents(session, docs, collection="cities", actor=None)


def test_imported_passages_are_found_by_full_text_search_on_both_databases(any_db):
    assert _import(any_db) == {"collection": "cities", "documents": 3, "passages": 3, "skipped": 0}
    assert _import(any_db)["skipped"] == 3  # the same documents again add nothing
    with any_db.reading() as session:
        assert list_collections(session) == [{"collection": "cities", "documents": 3, "passages": 3}]
        (hit,) = search_passages(session, "Lemberg", 5)
        assert hit.title == "Lviv" and "1256" in hit.text
        ranked = search_passages(session, "capital", 5)
        assert {h.title for h in ranked} == {"Tokyo", "Paris"}
        assert [h.title for h in search_passages(session, "capital of Japan", 5)] == ["Tokyo"]
        assert search_passages(session, "Atlantis", 5) == []
        for query in HOSTILE:  # never read as search syntax, never an error
            assert isinstance(search_passages(session, query, 5), list)
        assert [h.title for h in search_passages(session, '"Lemberg" OR NEAR(', 5)] == []
        assert passages_by_id(session, [hit.id, 999_999]) == [hit]


def test_the_search_index_follows_deletes(any_db):
    _import(any_db)
    with any_db.sessions() as session, session.begin():
        session.execute(text("DELETE FROM reference_documents WHERE title = 'Lviv'"))
    with any_db.reading() as session:
        assert search_passages(session, "Lemberg", 5) == []
        assert len(search_passages(session, "capital", 5)) == 2


def test_0007_goes_down_and_up_keeping_users_who_are_not_models(any_db):
    with any_db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (name, name_key, password_hash, role, active, failed_logins, created_at) "
                "VALUES ('ann', 'ann', 'x', 'annotator', true, 0, CURRENT_TIMESTAMP)"
            )
        )
    _import(any_db)
    downgrade(any_db.engine, "0006")
    tables = set(inspect(any_db.engine).get_table_names())
    assert not {"judges", "judge_results", "passages", "reference_documents", "passages_fts"} & tables
    assert "bot" not in {c["name"] for c in inspect(any_db.engine).get_columns("users")}
    upgrade(any_db.engine)
    assert current_revision(any_db.engine) == "0007"
    with any_db.engine.connect() as conn:
        assert conn.execute(text("SELECT name, bot FROM users")).all() == [("ann", False)]
    _import(any_db)  # the index works again after the round trip
    with any_db.reading() as session:
        assert [h.title for h in search_passages(session, "Lemberg", 5)] == ["Lviv"]


def test_cli_references_import_list_search(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    folder = tmp_path / "refs"
    folder.mkdir()
    (folder / "lviv.md").write_text(LVIV, encoding="utf-8")
    (folder / "cities.jsonl").write_text(JSONL, encoding="utf-8")
    assert main(["--quiet", "references", "import", str(folder), "--name", "atlas"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == 3
    assert main(["--quiet", "references", "list"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["collection"] == "atlas"
    assert main(["--quiet", "references", "search", "Eiffel Tower"]) == 0
    assert [r["title"] for r in json.loads(capsys.readouterr().out)] == ["Paris"]
    (folder / "bad.jsonl").write_text("{oops", encoding="utf-8")
    assert main(["--quiet", "references", "import", str(folder)]) == 2
    assert "bad.jsonl: line 1: not valid JSON" in capsys.readouterr().err
    assert main(["--quiet", "references", "list"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["documents"] == 3  # nothing of the bad folder stored
