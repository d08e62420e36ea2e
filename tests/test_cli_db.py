"""`python -m core import/export/users/db` against a real SQLite file (DATABASE_URL)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from core.orchestration.cli import main

GOOD = [
    {
        "id": "a",
        "conversation": [
            {"role": "user", "content": "Where is Lviv?"},
            {"role": "assistant", "content": "Lviv (German: Lemberg) is in Ukraine 🇺🇦."},
        ],
        "annotations": [
            {"span": "Lemberg", "index": 14, "label": "Supported"},
            {"span": "Ukraine", "label": "Not Supported"},
        ],
    },
    {
        "id": "b",
        "conversation": [
            {"role": "user", "content": "Capital of Japan?"},
            {"role": "assistant", "content": "東京 (Tokyo) is the capital."},
        ],
        "annotations": [{"span": "Tokyo", "index": 99, "label": "supported"}],
    },
]


@pytest.fixture()
def database(tmp_path, monkeypatch):
    path = tmp_path / "cli.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def counts(db_path) -> dict[str, int]:
    with sqlite3.connect(db_path) as conn:
        return {
            t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("generations", "annotation_sets", "spans", "events", "users")
        }


def test_import_export_round_trip(tmp_path, database, capsys):
    source = tmp_path / "in.jsonl"
    write_jsonl(source, GOOD)
    code, out, err = run(capsys, "import", str(source), "--dataset", "demo")
    assert code == 0, err
    report = json.loads(out)
    assert report["imported"] == 2 and report["spans"] == 3 and report["by_search"] == 2

    code, out, err = run(capsys, "import", str(source), "--dataset", "demo")
    assert code == 0 and json.loads(out)["duplicates"] == 2

    exported = tmp_path / "out.jsonl"
    assert run(capsys, "export", "--dataset", "demo", "--out", str(exported))[0] == 0
    rows = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"]
    first = rows[0]["annotations"]
    assert [(a["span"], a["index"], a["label"]) for a in first] == [
        ("Lemberg", 14, "Supported"),
        ("Ukraine", 29, "Not Supported"),
    ]
    assert rows[1]["annotations"][0]["index"] == 4

    # Import(export(x)) == x: a fresh dataset from the export exports identically.
    assert run(capsys, "import", str(exported), "--dataset", "again")[0] == 0
    again = tmp_path / "again.jsonl"
    assert run(capsys, "export", "--dataset", "again", "--out", str(again))[0] == 0
    strip = lambda rs: [{k: v for k, v in r.items() if k != "split"} for r in rs]
    assert strip([json.loads(x) for x in again.read_text(encoding="utf-8").splitlines()]) == strip(rows)

    conll = tmp_path / "out.conll"
    assert run(capsys, "export", "--dataset", "demo", "--out", str(conll), "--format", "conll")[0] == 0
    text = conll.read_text(encoding="utf-8")
    assert "Lemberg" in text and "B-SUP" in text and "B-HAL" in text


def test_bad_file_imports_nothing_and_lists_every_bad_line(tmp_path, database, capsys):
    source = tmp_path / "bad.jsonl"
    source.write_text(json.dumps(GOOD[0]) + "\n{broken\n" + json.dumps({"conversation": "nope"}) + "\n")
    run(capsys, "db", "upgrade")
    before = counts(database)
    code, out, err = run(capsys, "import", str(source), "--dataset", "demo")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "2 bad lines" in err and "line 2" in err
    assert counts(database) == before


def test_users_commands_and_last_admin(tmp_path, database, capsys):
    assert run(capsys, "users", "add", "root", "--role", "admin", "--password", "correct-horse")[0] == 0
    assert run(capsys, "users", "add", "ann", "--password", "annotator-pw")[0] == 0
    code, out, _ = run(capsys, "users", "list")
    assert out.splitlines() == ["ann\tannotator\tactive", "root\tadmin\tactive"]
    assert run(capsys, "users", "--actor", "root", "set-role", "ann", "reviewer")[0] == 0
    code, _, err = run(capsys, "users", "--actor", "root", "deactivate", "root")
    assert code == 2 and "last admin" in err
    code, _, err = run(capsys, "users", "add", "ann", "--password", "whatever-pw")
    assert code == 2 and "already exists" in err
    code, _, err = run(capsys, "users", "add", "shorty", "--password", "x")
    assert code == 2 and "at least 8" in err
    assert run(capsys, "users", "reset-password", "ann", "--password", "new-password")[0] == 0
    with sqlite3.connect(database) as conn:
        actions = [a for (a,) in conn.execute("SELECT action FROM events ORDER BY id")]
        hashes = [h for (h,) in conn.execute("SELECT password_hash FROM users")]
        logged = " ".join(str(r) for r in conn.execute("SELECT before, after FROM events"))
    assert actions == ["user.add", "user.add", "user.set_role", "user.reset_password"]
    assert all(h.startswith("$argon2") for h in hashes) and not any(h in logged for h in hashes)


def test_import_as_user_and_unknown_user(tmp_path, database, capsys):
    source = tmp_path / "in.jsonl"
    write_jsonl(source, GOOD)
    code, _, err = run(capsys, "import", str(source), "--dataset", "d", "--as-user", "ghost")
    assert code == 2 and "unknown user 'ghost'" in err
    assert run(capsys, "users", "add", "ann", "--password", "annotator-pw")[0] == 0
    assert run(capsys, "import", str(source), "--dataset", "d", "--as-user", "ann")[0] == 0
    out_gold, out_ann = tmp_path / "gold.jsonl", tmp_path / "ann.jsonl"
    assert run(capsys, "export", "--dataset", "d", "--out", str(out_gold))[0] == 0
    assert (
        run(capsys, "export", "--dataset", "d", "--out", str(out_ann), "--which", "annotator", "--annotator", "ann")[0]
        == 0
    )
    assert all("annotations" not in json.loads(x) for x in out_gold.read_text().splitlines())
    assert sum(len(json.loads(x)["annotations"]) for x in out_ann.read_text().splitlines()) == 3


def test_backup_and_restore_round_trip(tmp_path, database, capsys):
    source = tmp_path / "in.jsonl"
    write_jsonl(source, GOOD)
    assert run(capsys, "import", str(source), "--dataset", "demo")[0] == 0
    saved = counts(database)
    backup = tmp_path / "backup.db"
    assert run(capsys, "db", "backup", str(backup))[0] == 0
    assert run(capsys, "import", str(source), "--dataset", "other")[0] == 0
    assert counts(database) != saved
    assert run(capsys, "db", "restore", str(backup))[0] == 0
    assert counts(database) == saved
    code, _, err = run(capsys, "db", "backup", str(backup))
    assert code == 2 and "exists" in err


def test_db_current_after_upgrade(database, capsys):
    assert run(capsys, "db", "upgrade")[0] == 0
    code, out, _ = run(capsys, "db", "current")
    from db.migrate import head_revision

    assert code == 0 and out.strip() == head_revision() == "0007"
