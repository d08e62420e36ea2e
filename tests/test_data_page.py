"""Data page logic with AppTest on a real SQLite file: upload -> preview -> import, a bad file
changes nothing, export round trip, confirmed delete with an event, batch refusal of a bad file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]


def lines(n: int = 3) -> bytes:
    rows = []
    for i in range(n):
        answer = f"Lviv was founded in {1250 + i} by Daniel of Galicia."
        rows.append({"id": f"g{i}", "conversation": [{"role": "user", "content": f"Who founded Lviv? ({i})"},
                                                     {"role": "assistant", "content": answer}],
                     "annotations": [{"span": str(1250 + i), "index": answer.index(str(1250 + i)),
                                      "label": "Not Supported"},
                                     {"span": "Daniel", "index": 999, "label": "Supported"}]})
    return "\n".join(json.dumps(r) for r in rows).encode() + b"\n"


@pytest.fixture()
def env(tmp_path, monkeypatch):
    import streamlit as st

    from db import open_database
    from db.users import add_user

    url = f"sqlite:///{tmp_path / 'app.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("PROBELENS_SEED_DEMO", "0")
    monkeypatch.chdir(REPO)
    st.cache_resource.clear()
    database = open_database(url)
    with database.sessions() as session, session.begin():
        add_user(session, "boss", "boss-password", role="admin")
    yield database
    database.dispose()
    st.cache_resource.clear()


def data_page() -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    fields = {t.label: t for t in at.text_input}
    fields["User name"].input("boss")
    fields["Password"].input("boss-password")
    at.button[0].click()
    at.run()
    at.switch_page("pages/data.py")
    at.run()
    assert not at.exception, at.exception
    return at


def generations(database) -> int:
    from db.models import Generation

    with database.sessions() as session:
        return session.scalar(select(func.count()).select_from(Generation))


def button(at: AppTest, starts: str):
    return next(b for b in at.button if b.label.startswith(starts))


def test_upload_preview_then_import(env):
    at = data_page()
    at.file_uploader(key="imp-file").set_value(("lviv.jsonl", lines(), "application/jsonl")).run()
    assert not at.exception, at.exception
    shown = {m.label: m.value for m in at.metric}
    assert shown == {"Spans found by index": "3", "Spans found by text search": "3", "Spans not found": "0"}
    assert any("detected format **jsonl**" in md.value for md in at.markdown)
    assert generations(env) == 0  # the preview wrote nothing
    at.text_input(key="imp-dataset").set_value("lviv").run()
    button(at, "Import into 'lviv'").click().run()
    assert any("Imported 3 answers into 'lviv'" in s.value for s in at.success)
    assert generations(env) == 3


def test_a_bad_file_lists_each_bad_line_and_imports_nothing(env):
    bad = lines(2) + b"{broken\n" + json.dumps({"conversation": "nope"}).encode() + b"\n"
    at = data_page()
    at.file_uploader(key="imp-file").set_value(("bad.jsonl", bad, "application/jsonl")).run()
    assert any("2 bad lines" in e.value for e in at.error)
    table = at.dataframe[-1].value
    assert list(table["line"]) == [3, 4]
    assert not [b for b in at.button if b.label.startswith("Import into")]
    assert generations(env) == 0


def test_export_download_imports_back_to_the_same_content(env, tmp_path):
    from db.exporter import export_records
    from db.importer import import_file

    with env.sessions() as session, session.begin():
        import_file(session, lines(), dataset="lviv", actor=None, source_name="lviv.jsonl")
    at = data_page()
    at.selectbox(key="exp-dataset").set_value("lviv")
    at.selectbox(key="exp-format").set_value("jsonl").run()
    button(at, "Prepare the file").click().run()
    _wanted, content, file_name, _mime, count = at.session_state["exp-ready"]
    assert file_name == "lviv-gold.jsonl" and count == 3
    assert any(d.label.startswith("Download lviv-gold.jsonl (3 answers)") for d in at.get("download_button"))
    with env.sessions() as session, session.begin():
        import_file(session, content, dataset="again", actor=None, source_name=file_name)
    with env.sessions() as session:
        first = [(r["conversation"], r["annotations"]) for r in export_records(session, "lviv")]
        second = [(r["conversation"], r["annotations"]) for r in export_records(session, "again")]
    assert first == second and len(first) == 3


def test_delete_needs_the_typed_name_and_is_logged(env):
    from db.events import list_events
    from db.importer import import_file

    with env.sessions() as session, session.begin():
        import_file(session, lines(), dataset="lviv", actor=None, source_name="lviv.jsonl")
    at = data_page()
    go = button(at, "Delete permanently")
    assert go.disabled
    at.text_input(key="del-confirm-lviv").set_value("lvi").run()
    assert button(at, "Delete permanently").disabled and generations(env) == 3
    at.text_input(key="del-confirm-lviv").set_value("lviv").run()
    button(at, "Delete permanently").click().run()
    assert generations(env) == 0
    with env.sessions() as session:
        from db.users import get_user

        event = list_events(session, action="dataset.delete")[0]
        assert event.user_id == get_user(session, "boss").id and event.before["generations"] == 3


def test_a_bad_prompts_file_starts_no_batch(env):
    from db.models import TrainRun

    at = data_page()
    at.file_uploader(key="batch-file").set_value(("p.jsonl", b'{"prompt": "ok"}\n{oops\n', "application/jsonl")).run()
    assert any("1 bad line" in e.value for e in at.error)
    submit = next(b for b in at.get("form_submit_button") if b.label == "Start batch")
    assert submit.disabled
    with env.sessions() as session:
        assert session.scalar(select(func.count()).select_from(TrainRun)) == 0
