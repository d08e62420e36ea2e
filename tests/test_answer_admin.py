"""Delete one answer and bulk actions on chosen answers (issue #25, what Label Studio / Argilla
users would miss): on SQLite and PostgreSQL, with the queue, training labels and exports."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.base.errors import UserError
from tests.support.capitals import seed


def count(session, model, **where) -> int:
    query = select(func.count()).select_from(model)
    for key, value in where.items():
        query = query.where(getattr(model, key) == value)
    return session.scalar(query)


def test_deleting_an_answer_takes_its_annotations_and_leaves_queue_training_and_exports(any_db):
    from db.answer_admin import delete_answer
    from db.events import list_events
    from db.exporter import export_records
    from db.labels import labelled_generations
    from db.models import AnnotationSet, Generation
    from db.users import get_user

    ids = seed(any_db, annotators=1)
    with any_db.sessions() as session, session.begin():
        ann = get_user(session, "ann0")
        event = delete_answer(session, ids[0], ann)
        assert event.before["annotation_sets"] == 2 and event.before["spans"] == 2
        assert event.before["dataset"] == "capitals" and event.before["text"].startswith("The capital of France")
    with any_db.sessions() as session:
        assert count(session, Generation, id=ids[0]) == 0
        assert count(session, AnnotationSet, generation_id=ids[0]) == 0
        assert ids[0] not in {x.row_id for x in labelled_generations(session)}
        assert len(list(export_records(session, "capitals", which="gold"))) == len(ids) - 1
        logged = list_events(session, action="generation.delete")[0]
        assert logged.generation_id == ids[0] and "deleted answer" in logged.detail
    with any_db.sessions() as session, session.begin(), pytest.raises(UserError, match="unknown answer"):
        delete_answer(session, ids[0], None)


def test_bulk_assign_skip_and_split_check_every_id_first(any_db):
    from db.answer_admin import answers_overview, assign_answers, move_to_split, skip_answers
    from db.models import Assignment, Generation, Skip
    from db.users import add_user

    ids = seed(any_db)
    with any_db.sessions() as session, session.begin():
        boss = add_user(session, "boss", "boss-password", "admin")
        add_user(session, "dora", "dora-password", "annotator")
    chosen = ids[:5]
    with any_db.sessions() as session, session.begin():
        with pytest.raises(UserError, match="unknown answer #999999; nothing was changed"):
            move_to_split(session, [*chosen, 999999], "test", actor=boss)
    with any_db.sessions() as session, session.begin():
        assert count(session, Generation, split="test") == 0  # the bad id changed nothing
        assert assign_answers(session, chosen, "dora", actor=boss) == 5
        assert assign_answers(session, chosen, "dora", actor=boss) == 0  # held already: left as it is
        assert move_to_split(session, chosen, "test", actor=boss) == 5
    with any_db.sessions() as session, session.begin():
        overview = {row["id"]: row for row in answers_overview(session, "capitals")}
        assert all(overview[i]["assigned to"] == "dora" and overview[i]["split"] == "test" for i in chosen)
        assert skip_answers(session, chosen[:2], "dora", actor=boss) == 2
    with any_db.sessions() as session:
        assert count(session, Skip) == 2
        assert count(session, Assignment, status="assigned") == 3  # the skipped two were handed back
        with pytest.raises(UserError, match="unknown user"):
            assign_answers(session, chosen, "nobody", actor=None)


def test_generate_discards_only_its_own_unlabelled_answer(sqlite_db):
    from core.base.types import Generation as CoreGeneration
    from db.answer_admin import discard_own
    from db.generations import add_generation, get_or_create_dataset
    from db.users import add_user

    ids = seed(sqlite_db)  # gold sets, made by nobody
    answer = CoreGeneration([{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}])
    with sqlite_db.sessions() as session, session.begin():
        dora = add_user(session, "dora", "dora-password", "annotator")
        mine = add_generation(session, get_or_create_dataset(session, "playground"), answer, created_by=dora).id
    with sqlite_db.sessions() as session, session.begin():
        with pytest.raises(UserError, match="not made by you"):
            discard_own(session, ids[0], dora)
        assert discard_own(session, mine, dora).action == "generation.discard"


def test_the_cli_moves_assigns_skips_and_deletes_chosen_answers(tmp_path, monkeypatch, capsys):
    import sqlite3

    from core.orchestration.cli import main
    from db import open_database

    path = tmp_path / "cli.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    database = open_database()
    ids = seed(database)
    with database.sessions() as session, session.begin():
        from db.users import add_user

        add_user(session, "dora", "dora-password", "annotator")
    database.dispose()
    span = f"{ids[0]}-{ids[2]},{ids[5]}"
    assert main(["--quiet", "answers", "split", span, "--to", "test"]) == 0
    assert main(["--quiet", "answers", "assign", span, "--to", "dora"]) == 0
    assert main(["--quiet", "answers", "skip", str(ids[0]), "--for", "dora"]) == 0
    assert main(["--quiet", "answers", "delete", str(ids[5])]) == 0
    capsys.readouterr()
    assert main(["--quiet", "answers", "split", "x-y", "--to", "test"]) == 2
    assert main(["--quiet", "answers", "delete", str(ids[5])]) == 2  # gone: one message, exit 2
    assert "unknown answer" in capsys.readouterr().err
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM generations WHERE split = 'test'").fetchone()[0] == 3
        assert conn.execute("SELECT COUNT(*) FROM assignments WHERE status = 'assigned'").fetchone()[0] == 2
        assert conn.execute("SELECT COUNT(*) FROM skips").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == len(ids) - 1
