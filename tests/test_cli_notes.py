"""`python -m core comments|skips|guidelines` against a real SQLite file, and comments and skips
travelling in `--which all` exports (`comments_by`, `skips_by`) and back in imports."""

from __future__ import annotations

import json
import sqlite3

import pytest

from core.orchestration.cli import main
from tests.test_cli_db import GOOD, write_jsonl


@pytest.fixture()
def database(tmp_path, monkeypatch, capsys):
    path = tmp_path / "notes.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.setenv("PROBELENS_NEW_PASSWORD", "a-long-enough-password")
    source = tmp_path / "in.jsonl"
    write_jsonl(source, GOOD)
    assert main(["--quiet", "import", str(source), "--dataset", "demo"]) == 0
    for name, role in (("ann", "annotator"), ("rev", "reviewer"), ("boss", "admin")):
        assert main(["--quiet", "users", "add", name, "--role", role]) == 0
    capsys.readouterr()
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def count(db_path, table: str) -> int:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_comments_commands(database, capsys):
    assert run(capsys, "comments", "add", "1", "Is Lemberg right?\tCheck.", "--actor", "ann")[0] == 0
    assert run(capsys, "comments", "add", "2", "needs a look", "--flag", "--actor", "ann")[0] == 0
    code, out, _ = run(capsys, "comments", "list")
    rows = [line.split("\t") for line in out.splitlines()]
    assert code == 0 and [r[1] for r in rows] == ["1", "2"]
    assert (
        rows[0][3:5] == ["ann", "comment"] and rows[0][6] == "Is Lemberg right?\\tCheck."
    )  # a tab cannot forge a column
    assert rows[1][4] == "open flag"
    assert run(capsys, "comments", "list", "--open-flags")[1].count("\n") == 1
    assert run(capsys, "comments", "resolve", "2", "--actor", "rev")[0] == 0
    assert run(capsys, "comments", "list", "--open-flags")[1] == ""
    assert "resolved flag" in run(capsys, "comments", "list", "--answer", "2")[1]
    # bad input: exit 2, one line, nothing written
    before = count(database, "answer_comments")
    for argv in (
        ("comments", "add", "99", "x", "--actor", "ann"),
        ("comments", "add", "1", "x", "--actor", "nobody"),
        ("comments", "add", "1", "", "--actor", "ann"),
    ):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (argv, err)
    code, _, err = run(capsys, "comments", "add", "one", "x", "--actor", "ann")  # argparse: usage + the error
    assert code == 2 and "an answer id is a whole number" in err
    assert count(database, "answer_comments") == before


def test_skips_commands(database, capsys):
    assert run(capsys, "skips", "add", "1", "--actor", "ann")[0] == 0
    code, out, _ = run(capsys, "skips", "list")
    assert code == 0 and [line.split("\t")[:3] for line in out.splitlines()] == [["1", "demo", "ann"]]
    assert run(capsys, "skips", "list", "--user", "rev")[1] == ""
    assert run(capsys, "skips", "remove", "1", "--actor", "ann")[0] == 0
    assert run(capsys, "skips", "list")[1] == ""
    code, out, err = run(capsys, "skips", "remove", "1", "--actor", "ann")
    assert code == 2 and "has not skipped" in err and len(err.strip().splitlines()) == 1


def test_guidelines_commands(database, capsys, tmp_path):
    code, _, err = run(capsys, "guidelines", "show")
    assert code == 2 and "no guidelines yet" in err
    rules = tmp_path / "rules.md"
    rules.write_text("# Rules\n\nMark every wrong **city**.\n", encoding="utf-8")
    assert run(capsys, "guidelines", "set", "--file", str(rules), "--actor", "boss")[0] == 0
    code, out, err = run(capsys, "guidelines", "show")
    assert code == 0 and out == "# Rules\n\nMark every wrong **city**.\n" and "version 1 by boss" in err
    # an annotator may not; a missing or non-UTF-8 file is refused; nothing changes
    for argv in (
        ("guidelines", "set", "--file", str(rules), "--actor", "ann"),
        ("guidelines", "set", "--file", str(tmp_path / "missing.md"), "--actor", "boss"),
    ):
        code, out, err = run(capsys, *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
    (tmp_path / "latin1.md").write_bytes("caf\xe9".encode("latin-1"))
    code, _, err = run(capsys, "guidelines", "set", "--file", str(tmp_path / "latin1.md"), "--actor", "boss")
    assert code == 2 and "not UTF-8" in err
    assert count(database, "guidelines") == 1


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_comments_and_skips_round_trip_through_export_and_import(database, capsys, tmp_path, fmt):
    assert run(capsys, "comments", "add", "1", "Lemberg is the old name", "--actor", "ann")[0] == 0
    assert run(capsys, "comments", "add", "1", "check Ukraine", "--flag", "--actor", "rev")[0] == 0
    assert run(capsys, "comments", "add", "2", "resolved one", "--flag", "--actor", "ann")[0] == 0
    assert run(capsys, "comments", "resolve", "2", "--actor", "rev")[0] == 0
    assert run(capsys, "skips", "add", "2", "--actor", "ann")[0] == 0

    out = tmp_path / f"all.{fmt}"
    assert run(capsys, "export", "--dataset", "demo", "--out", str(out), "--format", fmt, "--which", "all")[0] == 0
    if fmt == "jsonl":
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert [c["body"] for c in rows[0]["comments_by"]["ann"]] == ["Lemberg is the old name"]
        assert rows[0]["comments_by"]["rev"][0]["flagged"] is True and rows[0]["skips_by"] == {}
        assert rows[1]["comments_by"]["ann"][0]["resolved_by"] == "rev" and set(rows[1]["skips_by"]) == {"ann"}

    code, report, err = run(capsys, "import", str(out), "--dataset", "again")
    assert code == 0, err
    assert json.loads(report)["comments"] == 3 and json.loads(report)["skips"] == 1
    listed = run(capsys, "comments", "list", "--dataset", "again")[1].splitlines()
    assert [line.split("\t")[3:5] + line.split("\t")[6:] for line in listed] == [
        ["ann", "comment", "Lemberg is the old name"],
        ["rev", "open flag", "check Ukraine"],
        ["ann", "resolved flag", "resolved one"],
    ]
    original = {line.split("\t")[5] for line in run(capsys, "comments", "list", "--dataset", "demo")[1].splitlines()}
    assert {line.split("\t")[5] for line in listed} == original  # the times travel too
    assert [line.split("\t")[1:3] for line in run(capsys, "skips", "list", "--dataset", "again")[1].splitlines()] == [
        ["again", "ann"]
    ]
    # and the second export equals the first (answer ids aside)
    again = tmp_path / f"again.{fmt}"
    assert run(capsys, "export", "--dataset", "again", "--out", str(again), "--format", fmt, "--which", "all")[0] == 0
    if fmt == "jsonl":
        notes = lambda path: [
            (r["comments_by"], r["skips_by"]) for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())
        ]
        assert notes(again) == notes(out)


def test_an_import_naming_an_unknown_person_imports_nothing(database, capsys, tmp_path):
    row = dict(GOOD[0], comments_by={"stranger": [{"body": "hi"}]})
    source = tmp_path / "notes.jsonl"
    write_jsonl(source, [row])
    before = count(database, "generations")
    code, out, err = run(capsys, "import", str(source), "--dataset", "other")
    assert code == 2 and out == "" and "line 1" in err and "'stranger'" in err and "no account" in err
    assert count(database, "generations") == before and count(database, "answer_comments") == 0
    write_jsonl(source, [dict(GOOD[0], skips_by={"ann": "yesterday"})])
    code, _, err = run(capsys, "import", str(source), "--dataset", "other")
    assert code == 2 and "skips_by" in err and "ISO" in err
