"""Data page logic with AppTest on a real SQLite file: upload -> preview -> import, a bad file
changes nothing, export round trip, confirmed delete with an event, batch refusal of a bad file."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from core.text.filenames import widget_key
from tests.support.apptest import add_users, plain, sign_in


def lines(n: int = 3) -> bytes:
    rows = []
    for i in range(n):
        answer = f"Lviv was founded in {1250 + i} by Daniel of Galicia."
        rows.append(
            {
                "id": f"g{i}",
                "conversation": [
                    {"role": "user", "content": f"Who founded Lviv? ({i})"},
                    {"role": "assistant", "content": answer},
                ],
                "annotations": [
                    {"span": str(1250 + i), "index": answer.index(str(1250 + i)), "label": "Not Supported"},
                    {"span": "Daniel", "index": 999, "label": "Supported"},
                ],
            }
        )
    return "\n".join(json.dumps(r) for r in rows).encode() + b"\n"


@pytest.fixture()
def env(app_database):
    add_users(app_database, ("boss", "boss-password", "admin"))
    return app_database


def data_page() -> AppTest:
    at = sign_in("boss", "boss-password", "pages/data.py")
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
    from core.orchestration.imports import import_file
    from db.exporter import export_records

    with env.sessions() as session, session.begin():
        import_file(session, lines(), dataset="lviv", actor=None, source_name="lviv.jsonl")
    at = data_page()
    at.selectbox(key="exp-dataset").set_value("lviv")
    at.selectbox(key="exp-format").set_value("jsonl").run()
    button(at, "Prepare the file").click().run()
    _wanted, content, file_name, _mime, count = at.session_state["exp-ready"]
    assert file_name == "lviv-gold.jsonl" and count == 3
    assert any(plain(d.label).startswith("Download lviv-gold.jsonl (3 answers)") for d in at.get("download_button"))
    with env.sessions() as session, session.begin():
        import_file(session, content, dataset="again", actor=None, source_name=file_name)
    with env.sessions() as session:
        first = [(r["conversation"], r["annotations"]) for r in export_records(session, "lviv")]
        second = [(r["conversation"], r["annotations"]) for r in export_records(session, "again")]
    assert first == second and len(first) == 3


def test_delete_needs_the_typed_name_and_is_logged(env):
    from core.orchestration.imports import import_file
    from db.events import list_events

    with env.sessions() as session, session.begin():
        import_file(session, lines(), dataset="lviv", actor=None, source_name="lviv.jsonl")
    at = data_page()
    go = button(at, "Delete permanently")
    assert go.disabled
    at.text_input(key=widget_key("del-confirm", "lviv")).set_value("lvi").run()
    assert button(at, "Delete permanently").disabled and generations(env) == 3
    at.text_input(key=widget_key("del-confirm", "lviv")).set_value("lviv").run()
    button(at, "Delete permanently").click().run()
    assert generations(env) == 0
    with env.sessions() as session:
        from db.users import get_user

        event = list_events(session, action="dataset.delete")[0]
        assert event.user_id == get_user(session, "boss").id and event.before["generations"] == 3


def test_overlap_is_set_once_per_dataset_on_the_datasets_tab(env):
    """#25 friction 4: the admin's project setting, stored and shown back."""
    from core.orchestration.imports import import_file
    from db.generations import get_dataset

    with env.sessions() as session, session.begin():
        import_file(session, lines(), dataset="lviv", actor=None, source_name="lviv.jsonl")
    at = data_page()
    k_box = next(n for n in at.number_input if n.label == "Annotators per answer (k)")
    share = next(n for n in at.number_input if n.label == "Of the answers (%)")
    assert (k_box.value, share.value) == (1, 100)
    k_box.set_value(3)
    share.set_value(40)
    button(at, "Save overlap").click().run()
    assert not at.exception, at.exception
    assert any("3 annotators for 40%" in plain(s.value) for s in at.success)
    with env.sessions() as session:
        found = get_dataset(session, "lviv")
        assert (found.overlap_k, found.overlap_percent) == (3, 40)
    at = data_page()
    assert [n.value for n in at.number_input if n.label in ("Annotators per answer (k)", "Of the answers (%)")] == [
        3,
        40,
    ]


def test_a_bad_prompts_file_starts_no_batch(env):
    from db.models import TrainRun

    at = data_page()
    at.file_uploader(key="batch-file").set_value(("p.jsonl", b'{"prompt": "ok"}\n{oops\n', "application/jsonl")).run()
    assert any("1 bad line" in e.value for e in at.error)
    submit = next(b for b in at.get("form_submit_button") if b.label == "Start batch")
    assert submit.disabled
    with env.sessions() as session:
        assert session.scalar(select(func.count()).select_from(TrainRun)) == 0


# --- batch generation through the page: the run outlives the session that started it ------------


@pytest.fixture()
def tiny_env(env, tmp_path, monkeypatch, tiny_model_dir):
    """The Data page with the tiny model as the server's model and its own cache and probes."""
    monkeypatch.setenv("PROBELENS_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("PROBELENS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    return env


def start_batch_on_page(at: AppTest, prompts: list[str], dataset: str, max_new: int) -> None:
    at.file_uploader(key="batch-file").set_value(("p.txt", "\n".join(prompts).encode(), "text/plain")).run()
    assert any(c.value.startswith(f"{len(prompts)} prompts, e.g.") for c in at.caption)
    at.text_input(key="batch-dataset").set_value(dataset)
    at.number_input(key="batch-max-new").set_value(max_new)
    at.number_input(key="batch-temperature").set_value(1.0)
    next(b for b in at.button if b.label == "Start batch").click().run()
    assert not at.exception, at.exception


def wait_run(database, predicate, timeout: float = 120):
    import time

    from db.train_runs import latest_run

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with database.sessions() as session:
            run = latest_run(session, "generate")
            if run is not None and predicate(run):
                return run
        time.sleep(0.1)
    raise AssertionError(f"the batch run never got there: {run and (run.status, run.message, run.error)}")


def test_a_batch_started_on_the_page_finishes_after_the_page_is_closed(tiny_env):
    from core.orchestration.work_queue import queue
    from db.users import get_user

    at = data_page()
    start_batch_on_page(at, ["Who founded Lviv?", "Name a city in Japan.", "What is Go?"], "page-batch", 8)
    del at  # the page is closed; the worker process goes on
    run = wait_run(tiny_env, lambda r: r.status not in ("queued", "running"))
    assert run.status == "succeeded", run.error
    assert run.params["dataset"] == "page-batch" and run.params["max_new_tokens"] == 8
    assert len(run.params["prompts"]) == 3 and run.params["model"] is None  # the server's model
    again = data_page()  # reopened in a new session: the run is found from the database
    assert any(f"Batch run {run.id} finished: generated 3 answers" in s.value for s in again.success)
    table = next(d.value for d in again.dataframe if "hallucinated spans (gold)" in d.value.columns)
    assert table.set_index("dataset").loc["page-batch", "answers"] == 3
    with tiny_env.sessions() as session:
        boss = get_user(session, "boss")
        assert run.created_by == boss.id
        items = queue(session, boss, dataset="page-batch")
        assert len(items) == 3  # in the Annotate queue, unlabelled


def test_cancel_on_a_reopened_page_stops_the_batch_and_keeps_finished_answers(tiny_env):
    from db.events import list_events
    from db.users import get_user

    at = data_page()
    start_batch_on_page(at, [f"Tell me about river number {i}." for i in range(300)], "long-batch", 200)
    del at
    # answers end in bunches in a batched run: wait until some (any number) are stored
    wait_run(
        tiny_env, lambda r: r.status == "running" and r.message and re.search(r"\b[1-9]\d*/300 answers", r.message)
    )
    again = data_page()
    assert any(p.proto.text.startswith("Batch run") for p in again.get("progress"))
    next(b for b in again.button if b.label.startswith("Cancel batch run")).click().run()
    run = wait_run(tiny_env, lambda r: r.status not in ("queued", "running"), timeout=60)
    assert run.status == "cancelled"
    kept = generations(tiny_env)
    assert 2 <= kept < 300
    with tiny_env.sessions() as session:
        event = list_events(session, action="generate.cancel")[0]
        assert event.user_id == get_user(session, "boss").id and event.entity_id == run.id
    last = data_page()
    assert any(
        f"Batch run {run.id} was cancelled" in w.value and f"{kept} answers kept" in w.value for w in last.warning
    )
    resume = next(b for b in last.button if b.label.startswith(f"Resume batch run {run.id}"))
    assert f"the {300 - kept} prompts without an answer" in resume.label
    resume.click().run()
    assert not last.exception, last.exception
    resumed = wait_run(tiny_env, lambda r: r.id != run.id)
    assert resumed.params["resumes"] == run.id and len(resumed.params["prompts"]) == 300 - kept
    with tiny_env.sessions() as session, session.begin():
        from db.train_runs import request_cancel

        if resumed.status in ("queued", "running"):
            request_cancel(session, resumed.id, None)
    wait_run(tiny_env, lambda r: r.id == resumed.id and r.status not in ("queued", "running"), timeout=60)


def test_prompts_can_be_pasted_as_text_or_jsonl(tiny_env):
    at = data_page()
    at.text_area(key="batch-pasted").set_value('{"prompt": "Who founded Lviv?"}\n{"prompt": "Name a river."}\n').run()
    assert any(c.value.startswith("2 prompts, e.g.") for c in at.caption)
    at.text_area(key="batch-pasted").set_value("Who founded Lviv?\n\nName a river.\nWhat is Go?\n").run()
    assert any(c.value.startswith("3 prompts, e.g.") for c in at.caption)
    at.text_input(key="batch-dataset").set_value("pasted")
    at.number_input(key="batch-max-new").set_value(4)
    next(b for b in at.button if b.label == "Start batch").click().run()
    assert not at.exception, at.exception
    run = wait_run(tiny_env, lambda r: r.status not in ("queued", "running"))
    assert run.status == "succeeded", run.error
    assert [p[-1]["content"] for p in run.params["prompts"]] == ["Who founded Lviv?", "Name a river.", "What is Go?"]
    at.text_area(key="batch-pasted").set_value('{"prompt": "ok"}\n{"prompt": ""}\n').run()
    assert any("1 bad line" in e.value for e in at.error)


def test_the_answers_tab_lists_a_datasets_answers_to_choose_from(env):
    from tests.support.capitals import seed

    ids = seed(env)
    at = data_page()
    table = next(d.value for d in at.dataframe if "assigned to" in d.value.columns)
    assert list(table["id"]) == ids and set(table["split"]) == {"train", "validation"}
    assert (table["annotation sets"] == 1).all()  # the gold set of each
    assert any(c.value == "No answer selected." for c in at.caption)
