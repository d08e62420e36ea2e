"""The Data page in a real Chromium, against the real app on a fresh SQLite database with the
embedded model: a bad file imports nothing and lists its lines, a good file is previewed and
imported, an export downloads and imports back to the same content, a batch of 5 reaches the
end while the page is closed and reopened, another is cancelled midway, a dataset is deleted
only after its name is typed; and an annotator created on the Users page signs in elsewhere."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from core.text.filenames import widget_key
from tests.support.apptest import add_users
from tests.support.browser import CHROMIUM, served_app, sign_in, submit_add_user

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium"),
]

ADMIN, ADMIN_PW = "chief", "chief-password-1"
PROGRESS = '[data-testid="stProgress"] [role="progressbar"]'


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app on a fresh database with one admin and an active (untrained) probe of the
    embedded model, so batch answers are scored; no demo seed."""
    from core.engine.model import get_model
    from core.probes.config import ProbeConfig
    from core.probes.files import save_probe
    from core.probes.linear import LinearProbe
    from db.probes import register_probe

    def prepare(database) -> None:
        lm = get_model(None)
        config = ProbeConfig(
            model_id=lm.model_id, tokenizer_hash=lm.tokenizer_hash, layer=lm.default_layer, hidden_size=lm.hidden_size
        )
        folder = Path(database.engine.url.database).parent / "probe"
        save_probe(folder, LinearProbe(lm.hidden_size), config)
        add_users(database, (ADMIN, ADMIN_PW, "admin"))
        with database.sessions() as session, session.begin():
            register_probe(session, artifact_dir=str(folder), config=config, activate=True)

    with served_app(tmp_path_factory.mktemp("served"), prepare) as (app, database, url):
        yield app, database


# --- helpers -------------------------------------------------------------------------------------


def open_data(page, app, tab: str | None = None) -> None:
    sign_in(page, app, ADMIN, ADMIN_PW)
    page.get_by_role("link", name="Data").click()
    page.get_by_role("tab", name="Import").wait_for(timeout=30_000)
    if tab:
        page.get_by_role("tab", name=tab).click()
        page.wait_for_timeout(300)


def fill(page, key: str, value: str) -> None:
    box = page.locator(f".st-key-{key} input").first
    box.fill(value)
    box.press("Enter")
    page.wait_for_timeout(400)


def upload(page, key: str, path: Path) -> None:
    page.locator(f'.st-key-{key} input[type="file"]').set_input_files(str(path))


def count_in(database, dataset: str) -> int:
    from sqlalchemy import func, select

    from db.models import Dataset, Generation

    with database.sessions() as session:
        return session.scalar(select(func.count()).select_from(Generation).join(Dataset).where(Dataset.name == dataset))


def last_batch(database):
    from db.train_runs import latest_run

    with database.sessions() as session:
        return latest_run(session, "generate")


def records(n: int, offset: int = 0) -> list[dict]:
    rows = []
    for i in range(offset, offset + n):
        answer = f"Kyiv was founded in {480 + i} by Kyi."
        rows.append(
            {
                "id": f"kyiv-{i}",
                "conversation": [
                    {"role": "user", "content": f"When was Kyiv founded? ({i})"},
                    {"role": "assistant", "content": answer},
                ],
                "annotations": [
                    {"span": str(480 + i), "index": answer.index(str(480 + i)), "label": "Not Supported"},
                    {"span": "Kyi", "index": 999, "label": "Supported"},
                ],
            }
        )
    return rows


def write_jsonl(path: Path, rows: list, extra: str = "") -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n" + extra)
    return path


def prompts_file(path: Path, n: int, text: str) -> Path:
    path.write_text("\n".join(text.format(i=i) for i in range(n)) + "\n")
    return path


# --- tests ---------------------------------------------------------------------------------------


def test_bad_file_imports_nothing_good_file_imports_and_the_export_round_trips(page, served, tmp_path):
    from core.orchestration.imports import import_file
    from db.exporter import export_records

    app, database = served
    open_data(page, app)

    bad = write_jsonl(tmp_path / "bad.jsonl", records(2), '{"conversation": "nope"}\n{broken\n')
    upload(page, "imp-file", bad)
    page.get_by_text("2 bad lines: nothing can be imported").wait_for(timeout=30_000)
    table = page.locator('[data-testid="stDataFrame"]').filter(visible=True).last
    table.wait_for(timeout=10_000)
    cells = table.locator('[role="gridcell"]')  # the grid's accessible copy of its cells
    cells.first.wait_for(state="attached", timeout=10_000)
    texts = [t.strip() for t in cells.all_text_contents()]
    assert "3" in texts and "4" in texts and any("invalid JSON" in t for t in texts), texts
    assert page.get_by_role("button", name=re.compile("^Import into")).count() == 0
    assert count_in(database, "bad") == 0

    good = write_jsonl(tmp_path / "kyiv.jsonl", records(3))
    upload(page, "imp-file", good)
    page.get_by_text(re.compile(r"kyiv\.jsonl · detected format jsonl · 3 records")).wait_for(timeout=30_000)
    metrics = page.locator('[data-testid="stMetric"]')
    assert [m.inner_text().split("\n")[-1] for m in metrics.all()] == ["3", "3", "0"]  # index / search / unmatched
    assert count_in(database, "kyiv-browser") == 0  # the preview wrote nothing
    fill(page, "imp-dataset", "kyiv-browser")
    page.get_by_role("button", name="Import into 'kyiv-browser'").click()
    page.get_by_text("Imported 3 answers into 'kyiv-browser'").wait_for(timeout=30_000)
    assert count_in(database, "kyiv-browser") == 3

    page.get_by_role("tab", name="Export").click()
    page.locator(".st-key-exp-dataset input").first.click()
    page.get_by_role("option", name="kyiv-browser", exact=True).click()
    page.get_by_role("button", name="Prepare the file").click()
    with page.expect_download(timeout=30_000) as download:
        page.get_by_role("button", name=re.compile(r"Download kyiv-browser-gold\.jsonl \(3 answers\)")).click()
    content = Path(download.value.path()).read_bytes()
    exported = [json.loads(line) for line in content.decode().splitlines()]
    assert [r["conversation"] for r in exported] == [r["conversation"] for r in records(3)]
    assert [sorted((a["span"], a["label"]) for a in r["annotations"]) for r in exported] == [
        sorted([(str(480 + i), "Not Supported"), ("Kyi", "Supported")]) for i in range(3)
    ]
    with database.sessions() as session, session.begin():
        import_file(session, content, dataset="kyiv-again", actor=None, source_name="kyiv-browser-gold.jsonl")
    with database.sessions() as session:
        first = [(r["conversation"], r["annotations"]) for r in export_records(session, "kyiv-browser")]
        second = [(r["conversation"], r["annotations"]) for r in export_records(session, "kyiv-again")]
    assert first == second


def test_a_batch_of_five_reaches_the_end_while_the_page_is_closed_and_reopened(chromium, served, tmp_path):
    from sqlalchemy import func, select

    from db.models import Dataset, Generation, Prediction

    app, database = served
    first = chromium.new_context(viewport={"width": 1100, "height": 900})
    page = first.new_page()
    open_data(page, app, "Batch generation")
    upload(page, "batch-file", prompts_file(tmp_path / "five.txt", 5, "Name a famous landmark in country number {i}."))
    page.get_by_text("5 prompts, e.g.").wait_for(timeout=30_000)
    fill(page, "batch-dataset", "batch-browser")
    fill(page, "batch-max-new", "16")
    page.get_by_role("button", name="Start batch").click()
    page.locator(PROGRESS).first.wait_for(timeout=60_000)
    seen: list[float] = []  # the progress shown, first on this page, then on the reopened one
    try:
        seen.append(float(page.locator(PROGRESS).first.get_attribute("aria-valuenow", timeout=5_000) or 0))
    except Exception:
        pass
    first.close()  # the page is gone; the worker goes on

    second = chromium.new_context(viewport={"width": 1100, "height": 900})
    try:
        page = second.new_page()
        open_data(page, app, "Batch generation")
        deadline = time.monotonic() + 240
        finished = page.get_by_text(re.compile(r"Batch run \d+ finished"))
        while time.monotonic() < deadline and not finished.count():
            bar = page.locator(PROGRESS)
            if bar.count():
                try:
                    seen.append(float(bar.first.get_attribute("aria-valuenow", timeout=500) or 0))
                except Exception:
                    pass
            page.wait_for_timeout(250)
        page.get_by_text(re.compile(r"Batch run \d+ finished: generated 5 answers .* scored with v1")).wait_for(
            timeout=10_000
        )
        assert seen and seen == sorted(seen), seen  # a progress bar was shown and never went back
    finally:
        second.close()
    run = last_batch(database)
    assert run.status == "succeeded" and run.progress == 1.0
    assert count_in(database, "batch-browser") == 5
    with database.sessions() as session:
        scored = session.scalar(
            select(func.count())
            .select_from(Prediction)
            .join(Generation)
            .join(Dataset)
            .where(Dataset.name == "batch-browser")
        )
    assert scored == 5  # every answer carries the active probe's scores


def test_a_batch_cancelled_midway_keeps_what_finished(page, served, tmp_path):
    app, database = served
    open_data(page, app, "Batch generation")
    upload(page, "batch-file", prompts_file(tmp_path / "many.txt", 40, "Write two sentences about river number {i}."))
    page.get_by_text("40 prompts, e.g.").wait_for(timeout=30_000)
    fill(page, "batch-dataset", "batch-cancelled")
    fill(page, "batch-max-new", "48")
    page.get_by_role("button", name="Start batch").click()
    page.get_by_text(re.compile(r"2/40 answers")).wait_for(timeout=180_000)
    page.get_by_role("button", name=re.compile(r"Cancel batch run \d+")).click()
    page.get_by_text(re.compile(r"Batch run \d+ was cancelled")).wait_for(timeout=60_000)
    run = last_batch(database)
    kept = count_in(database, "batch-cancelled")
    assert run.status == "cancelled" and run.params["dataset"] == "batch-cancelled"
    assert 2 <= kept < 40


def test_a_dataset_is_deleted_only_after_its_name_is_typed_and_the_delete_is_logged(page, served):
    from core.orchestration.imports import import_file
    from db.events import list_events

    app, database = served
    with database.sessions() as session, session.begin():
        import_file(
            session,
            "\n".join(json.dumps(r) for r in records(2, 50)).encode(),
            dataset="doomed",
            actor=None,
            source_name="doomed.jsonl",
        )
    open_data(page, app, "Datasets")
    page.locator(".st-key-del-dataset input").first.click()
    page.get_by_role("option", name="doomed", exact=True).click()
    go = page.get_by_role("button", name="Delete permanently")
    assert go.is_disabled()
    fill(page, widget_key("del-confirm", "doomed"), "doome")
    assert go.is_disabled() and count_in(database, "doomed") == 2
    fill(page, widget_key("del-confirm", "doomed"), "doomed")
    go.click()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and count_in(database, "doomed"):
        page.wait_for_timeout(200)
    assert count_in(database, "doomed") == 0
    with database.sessions() as session:
        from db.users import get_user

        events = [e for e in list_events(session, action="dataset.delete") if e.before.get("name") == "doomed"]
        assert len(events) == 1 and events[0].before["generations"] == 2
        assert events[0].user_id == get_user(session, ADMIN).id


def test_admin_creates_an_annotator_who_signs_in_in_another_context(page, served, chromium):
    from db.users import get_user

    app, database = served
    sign_in(page, app, ADMIN, ADMIN_PW)
    page.get_by_role("link", name="Users").click()
    page.get_by_text("Add a user").wait_for(timeout=30_000)
    page.wait_for_timeout(1_000)  # let the page settle: a rerun would drop what is typed
    submit_add_user(page, "rookie", "rookie-password")
    page.get_by_text("rookie").first.wait_for(state="attached", timeout=30_000)
    with database.sessions() as session:
        assert get_user(session, "rookie").role == "annotator"
    other = chromium.new_context()
    try:
        second = other.new_page()
        sign_in(second, app, "rookie", "rookie-password")
        second.get_by_role("link", name="Annotate").wait_for(timeout=30_000)
        # an annotator's menu: no Users page, no Data page
        assert second.get_by_role("link", name="Users").count() == 0
        assert second.get_by_role("link", name="Data").count() == 0
        second.goto(f"{app.base}/data")  # a new session, straight to that URL
        login, refused = second.get_by_label("User name"), second.get_by_text("does not have access")
        login.or_(refused).first.wait_for(timeout=30_000)
        if login.count():  # not signed in from the session cookie: sign in again, from that URL
            login.fill("rookie")
            second.get_by_role("textbox", name="Password").fill("rookie-password")
            second.get_by_role("button", name="Sign in").click()
        refused.wait_for(timeout=30_000)
        assert second.get_by_role("tab", name="Batch generation").count() == 0  # nothing of the page
    finally:
        other.close()
