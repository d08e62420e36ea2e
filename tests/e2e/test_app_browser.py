"""The whole app in a real Chromium: log in, generate with the embedded model and watch
coloured tokens arrive, hover, stop, find the answer in the database, role refusal, and
untrusted text in the pasted-conversation mode. (Import, export, batches and a user created on
the Users page are driven in the browser by test_data_browser.py.)"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.support.apptest import add_users
from tests.support.browser import ARTIFACTS, CHROMIUM, ROOT, served_app, sign_in
from tests.support.span_editor import drag_tokens

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium"),
]

ADMIN, ADMIN_PW = "admin", "admin-password-1"
ANN, ANN_PW = "ann", "annotator-password"
HEATMAP = ".plh-root[data-token-count]"


@pytest.fixture(scope="module")
def probelens(tmp_path_factory, demo_seeded):
    """A copy of the session's small demo (answers + an active probe) with two users, served."""

    def prepare(database) -> None:
        add_users(database, (ADMIN, ADMIN_PW, "admin"), (ANN, ANN_PW, "annotator"))

    with served_app(tmp_path_factory.mktemp("probelens"), prepare, start_from=demo_seeded) as (app, database, url):
        yield app, database


def open_settings(page) -> None:
    page.get_by_text("Settings").click()
    try:
        page.get_by_label("Max new tokens").wait_for(state="visible", timeout=5_000)
    except Exception:
        page.get_by_text("Settings").click()
        page.get_by_label("Max new tokens").wait_for(state="visible", timeout=10_000)


def set_number(page, label: str, value: int) -> None:
    box = page.get_by_label(label)
    box.fill(str(value))
    box.press("Enter")
    page.wait_for_timeout(500)


def ask(page, question: str) -> None:
    box = page.get_by_placeholder("Ask the model a question")
    box.fill(question)
    box.press("Enter")


def token_colours(page) -> list[str]:
    return page.locator(HEATMAP).evaluate(
        "root => [...root.querySelectorAll('.plh-text span[data-i]')].map(s => getComputedStyle(s).backgroundColor)"
    )


def test_generate_streams_coloured_tokens_saves_and_hovers(page, probelens):
    app, database = probelens
    sign_in(page, app, ADMIN, ADMIN_PW)
    open_settings(page)
    set_number(page, "Max new tokens", 120)
    ask(page, "Tell me about the history of the city of Lviv.")

    # Coloured tokens appear while the answer is still being generated.
    page.locator(HEATMAP).wait_for(timeout=60_000)
    samples = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        generating = page.get_by_text(re.compile(r"Generating… \d+ tokens")).count() > 0
        colours = token_colours(page)
        samples.append((generating, len(colours), colours))
        if generating and len(colours) >= 10:
            break
        page.wait_for_timeout(200)
    generating, count, colours = samples[-1]
    assert generating and count >= 10, samples[-3:]
    grey = "rgb(224, 224, 224)"
    assert any(c not in ("rgba(0, 0, 0, 0)", grey) for c in colours), "tokens are not coloured by score"

    # Hover shows the probe score.
    page.locator(f"{HEATMAP} .plh-text span[data-i='3']").hover()
    tip = page.locator(".plh-tip")
    tip.wait_for(state="visible", timeout=5_000)
    assert re.search(r"score\s*0\.\d+", tip.inner_text(), re.I)

    page.get_by_text(re.compile(r"Open answer #\d+ in Annotate")).wait_for(timeout=120_000)
    link = page.get_by_text(re.compile(r"Open answer #\d+ in Annotate")).inner_text()
    generation_id = int(re.search(r"#(\d+)", link).group(1))

    from db.generations import get_generation, trace_of
    from db.predictions import scores_for

    with database.sessions() as session:
        row = get_generation(session, generation_id)
        trace = trace_of(row)
        assert row.dataset.name == "playground" and row.source == "generated"
        assert 0 < len(trace.token_ids) <= 120
        assert "".join(trace.texts) == row.completion
        scores = scores_for(session, 1, generation_id)
        assert scores is not None and len(scores) == len(trace.token_ids)
    assert page.locator(f"{HEATMAP} .plh-text span[data-i]").count() == len(trace.token_ids)


def test_stop_ends_generation_at_once(page, probelens):
    app, _ = probelens
    sign_in(page, app, ADMIN, ADMIN_PW)
    open_settings(page)
    set_number(page, "Max new tokens", 400)
    ask(page, "Write a long essay about the history of Europe.")
    page.locator(HEATMAP).wait_for(timeout=60_000)
    page.wait_for_function(
        "() => { const r = document.querySelector('.plh-root') ||"
        " [...document.querySelectorAll('*')].map(e => e.shadowRoot).filter(Boolean)"
        ".map(s => s.querySelector('.plh-root')).find(Boolean);"
        " return r && Number(r.dataset.tokenCount) >= 8; }",
        timeout=60_000,
    )
    page.get_by_role("button", name="Stop").click()
    page.get_by_text("Stopped by you.").wait_for(timeout=15_000)
    count = int(page.locator(HEATMAP).get_attribute("data-token-count"))
    page.wait_for_timeout(1500)
    assert int(page.locator(HEATMAP).get_attribute("data-token-count")) == count  # nothing more arrives
    assert count < 400


def test_annotator_cannot_open_the_users_page(page, probelens):
    app, _ = probelens
    sign_in(page, app, ANN, ANN_PW)
    links = page.locator("[data-testid='stSidebar'] a").all_inner_texts()
    assert not any("Users" in text for text in links)
    page.goto(f"{app.base}/users")
    # A new browser session, signed in from the session cookie: the URL leads to a refusal.
    page.get_by_text("does not have access").wait_for(timeout=30_000)
    assert page.get_by_label("User name").count() == 0
    assert page.get_by_text("Add a user").count() == 0


def test_pasted_conversation_shows_markup_as_text(page, probelens):
    app, _ = probelens
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(page, app, ADMIN, ADMIN_PW)
    page.get_by_text("Score a pasted conversation").click()
    hostile = "Paris <img src=x onerror=alert(1)> and </script><b>bold</b> end"
    page.get_by_label("User message").fill("What is the capital of France?")
    page.get_by_label("Assistant answer to score").fill(hostile)
    page.get_by_role("button", name="Score").click()
    page.locator(HEATMAP).wait_for(timeout=60_000)
    seen = page.locator(HEATMAP).evaluate(
        "root => ({text: root.querySelector('.plh-text').textContent,"
        " injected: root.querySelectorAll('img, b, script').length})"
    )
    assert seen["text"] == hostile
    assert seen["injected"] == 0
    page.wait_for_timeout(700)
    assert dialogs == []


# --- Annotate: edit, undo/redo, save; the same set edited from two places --------------------

EDITOR = ".plh-root[data-token-count]"


def demo_generation(database) -> tuple[int, str]:
    from sqlalchemy import select

    from db.models import Dataset, Generation

    with database.sessions() as session:
        row = session.execute(
            select(Generation.id, Generation.completion)
            .join(Dataset)
            .where(Dataset.name == "demo")
            .order_by(Generation.id)
        ).first()
    return row[0], row[1]


def open_in_annotate(page, app, generation_id: int, name: str, password: str):
    """A page URL opens a new Streamlit session: sign in on it; the URL's page and answer survive."""
    page.goto(f"{app.base}/annotate?generation={generation_id}")
    page.get_by_label("User name").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    root = page.locator(EDITOR)
    root.wait_for(timeout=60_000)
    return root


def my_set(database, generation_id: int, name: str):
    from db.annotations import get_set, spans_of
    from db.users import get_user

    with database.sessions() as session:
        found = get_set(session, generation_id, get_user(session, name))
        return (found.version, [(s.start, s.end, s.label) for s in spans_of(found)]) if found else None


def test_annotator_labels_undoes_redoes_and_saves(page, probelens):
    app, database = probelens
    generation_id, _text = demo_generation(database)
    root = open_in_annotate(page, app, generation_id, ANN, ANN_PW)
    prefilled = root.get_attribute("data-spans")  # a demo answer opens with its gold to practise on
    assert "Not Supported" not in prefilled
    drag_tokens(page, root, 0, 1)
    page.keyboard.press("1")
    spans = root.get_attribute("data-spans")
    assert "Not Supported" in spans
    page.keyboard.press("Control+z")
    assert root.get_attribute("data-spans") == prefilled
    page.keyboard.press("Control+Shift+Z")
    assert root.get_attribute("data-spans") == spans
    shown = int(re.search(r"Answer #(\d+)", page.get_by_text(re.compile(r"Answer #\d+")).first.inner_text()).group(1))
    page.keyboard.press("Enter")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and my_set(database, shown, ANN) is None:
        page.wait_for_timeout(200)
    version, stored = my_set(database, shown, ANN)
    assert version == 1 and len(stored) == prefilled.count('"start"') + 1
    assert [label for *_, label in stored].count("Not Supported") == 1
    assert shown == generation_id, f"the link opened answer #{shown}, not #{generation_id}"


def test_second_save_from_another_place_gets_the_conflict_view(chromium, probelens):
    """The same annotator set edited in two browser contexts: the later save is refused,
    shown as a conflict, and the first save's spans survive untouched."""
    app, database = probelens
    from sqlalchemy import select

    from db.models import Dataset, Generation

    with database.sessions() as session:
        generation_id = session.scalars(
            select(Generation.id).join(Dataset).where(Dataset.name == "demo").order_by(Generation.id.desc())
        ).first()
    first_ctx, second_ctx = chromium.new_context(), chromium.new_context()
    first, second = first_ctx.new_page(), second_ctx.new_page()
    try:
        root_a = open_in_annotate(first, app, generation_id, ANN, ANN_PW)
        root_b = open_in_annotate(second, app, generation_id, ANN, ANN_PW)
        drag_tokens(first, root_a, 0, 0)
        first.keyboard.press("3")
        first.keyboard.press("Enter")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and my_set(database, generation_id, ANN) is None:
            first.wait_for_timeout(200)
        saved_first = my_set(database, generation_id, ANN)
        assert saved_first and saved_first[0] == 1

        drag_tokens(second, root_b, 1, 2)
        second.keyboard.press("1")
        second.keyboard.press("Enter")
        second.get_by_text("saved version 1 of this answer after you opened it").wait_for(timeout=30_000)
        assert my_set(database, generation_id, ANN) == saved_first  # nothing overwritten
        assert "Not Supported" in second.locator(EDITOR).get_attribute("data-spans")  # local edits kept
        second.wait_for_timeout(500)  # a late rerun must not swap theirs in either
        assert "Not Supported" in second.locator(EDITOR).get_attribute("data-spans")
        second.get_by_role("button", name="Keep mine (save over theirs)").click()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and my_set(database, generation_id, ANN)[0] != 2:
            second.wait_for_timeout(200)
        version, stored = my_set(database, generation_id, ANN)
        assert version == 2 and [label for _s, _e, label in stored] == ["Not Supported"]
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        for name, pg in (("first", first), ("second", second)):
            pg.screenshot(path=str(ARTIFACTS / f"conflict-{name}.png"), full_page=True)
        raise
    finally:
        first_ctx.close()
        second_ctx.close()


REV, REV_PW = "rev", "reviewer-password"


def test_reviewer_merges_two_annotators_into_gold_and_export_has_it(page, probelens, tmp_path):
    """Two annotators disagree; the reviewer settles it group by group in the browser; the gold
    set and `python -m core export --which gold` carry exactly the merge."""
    import json
    import os
    import subprocess
    import sys

    from sqlalchemy import select

    from core.base.types import Span
    from db.annotations import get_set, save_annotation_set, spans_of
    from db.generations import get_generation, trace_of
    from db.models import Dataset, Event, Generation
    from db.users import add_user

    app, database = probelens
    with database.sessions() as session, session.begin():
        rows = session.scalars(
            select(Generation).join(Dataset).where(Dataset.name == "demo").order_by(Generation.id)
        ).all()
        row = rows[len(rows) // 2]
        generation_id, completion = row.id, row.completion
        offsets = trace_of(get_generation(session, generation_id)).offsets
        tok = [offsets[i] for i in (0, 3, 6)]
        add_user(session, REV, REV_PW, role="reviewer")
        bea = add_user(session, "bea", "bea-password-1", role="annotator")
        cal = add_user(session, "cal", "cal-password-1", role="annotator")
        save_annotation_set(
            session,
            generation_id,
            [Span(*tok[0], "Not Supported"), Span(*tok[2], "Supported")],
            owner=bea,
            expected_version=0,
            actor=bea,
        )
        save_annotation_set(
            session,
            generation_id,
            [Span(*tok[0], "Supported"), Span(*tok[1], "Not Supported")],
            owner=cal,
            expected_version=0,
            actor=cal,
        )
        gold_before = get_set(session, generation_id, None)
        gold_version = gold_before.version if gold_before else 0

    sign_in(page, app, REV, REV_PW)
    page.get_by_role("link", name="Review").click()
    picker = page.get_by_role("combobox", name="Answer", exact=True)
    picker.wait_for(timeout=60_000)
    picker.click()
    page.get_by_role("option", name=f"#{generation_id}", exact=True).click()
    page.get_by_text(f"{completion[tok[1][0] : tok[1][1]]!r} ({tok[1][0]}–{tok[1][1]})").wait_for(timeout=30_000)
    radios = page.locator('[data-testid="stRadio"]')
    assert radios.count() == 3  # one group per place where the sets differ
    radios.nth(0).get_by_text("cal", exact=True).click()  # cal's label for the first place
    page.wait_for_timeout(300)
    radios.nth(1).get_by_text("none", exact=True).click()  # drop cal's extra span
    page.wait_for_timeout(300)
    # the third place keeps its default, bea's span
    page.get_by_text("2 spans in the merged gold set").wait_for(timeout=15_000)
    page.get_by_role("button", name="Save merged gold").click()
    page.get_by_text("Gold saved.").or_(page.get_by_text(f"current gold version {gold_version + 1}")).first.wait_for(
        timeout=30_000
    )

    expected = sorted([(*tok[0], "Supported"), (*tok[2], "Supported")])
    with database.sessions() as session:
        gold = get_set(session, generation_id, None)
        assert gold.version == gold_version + 1
        assert [(s.start, s.end, s.label) for s in spans_of(gold)] == expected
        event = session.scalars(select(Event).where(Event.action == "review.gold").order_by(Event.id.desc())).first()
        assert event is not None and event.entity_id == gold.id

    out = tmp_path / "gold.jsonl"
    env = {
        **os.environ,
        "DATABASE_URL": str(database.engine.url.render_as_string(hide_password=False)),
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "core", "export", "--dataset", "demo", "--which", "gold", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    answer = next(r for r in records if r["conversation"][-1]["content"] == completion)
    exported = sorted((a["index"], a["index"] + len(a["span"]), a["label"]) for a in answer["annotations"])
    assert exported == expected
    assert all(completion[a["index"] : a["index"] + len(a["span"])] == a["span"] for a in answer["annotations"])


def test_admin_retrains_sees_progress_advance_and_the_new_version(page, probelens):
    """Retrain from the Probes page: a worker process, progress that moves, a new version."""
    from db.probes import list_probes

    app, database = probelens
    with database.sessions() as session:
        before = max(p.version for p in list_probes(session))
    sign_in(page, app, ADMIN, ADMIN_PW)
    page.get_by_role("link", name="Probes").click()
    epochs = page.get_by_label("Epochs (0 = auto)")
    epochs.wait_for(timeout=60_000)
    epochs.fill("4000")  # long enough to watch; the demo set has only a few answers
    page.get_by_role("button", name="Retrain").click()
    bar = page.locator('[data-testid="stProgress"] [role="progressbar"]')
    seen: list[float] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if bar.count():
            try:
                seen.append(float(bar.first.get_attribute("aria-valuenow", timeout=1_000) or 0))
            except Exception:
                pass
        if page.get_by_text(re.compile(rf"registered v{before + 1}")).count():
            break
        page.wait_for_timeout(250)
    page.get_by_text(re.compile(rf"registered v{before + 1}")).first.wait_for(timeout=30_000)
    distinct = sorted(set(seen))
    assert len(distinct) >= 3 and distinct == sorted(distinct), seen  # it moved, and only forward
    assert seen == sorted(seen), seen
    with database.sessions() as session:
        newest = list_probes(session)[0]
        assert newest.version == before + 1 and not newest.active
        assert newest.metrics["comparison"]["against"] == before
    # the picker moved to the new version, which can be promoted
    page.get_by_role("button", name=f"Promote v{before + 1} to active").wait_for(timeout=10_000)


def _add_capitals(database) -> dict[int, str]:
    """Labelled answers with both classes in train and validation; returns row id -> gold label."""
    from core.base.types import Generation, Span
    from db.annotations import save_annotation_set
    from db.generations import add_generation, get_or_create_dataset

    places = [
        ("France", "Paris", "Lyon"),
        ("Japan", "Tokyo", "Osaka"),
        ("Italy", "Rome", "Milan"),
        ("Spain", "Madrid", "Seville"),
        ("Peru", "Lima", "Cusco"),
        ("Kenya", "Nairobi", "Mombasa"),
    ]
    labels = {}
    with database.sessions() as session, session.begin():
        dataset = get_or_create_dataset(session, "capitals-e2e")
        for n, (country, right, wrong) in enumerate(places * 4):
            city = wrong if n % 2 else right
            text = f"The capital of {country} is {city}, a large city."
            label = "Not Supported" if n % 2 else "Supported"
            gen = Generation(
                [
                    {"role": "user", "content": f"What is the capital of {country}? ({n})"},
                    {"role": "assistant", "content": text},
                ]
            )
            row = add_generation(session, dataset, gen, split="validation" if n % 4 in (0, 1) else "train")
            start = text.index(city)
            save_annotation_set(
                session, row.id, [Span(start, start + len(city), label)], owner=None, expected_version=0, actor=None
            )
            labels[row.id] = label
    return labels


def _metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return box.locator('[data-testid="stMetricValue"]').inner_text()


def test_inspect_threshold_moves_numbers_and_an_error_opens_its_heatmap(page, probelens):
    app, database = probelens
    labels = _add_capitals(database)
    sign_in(page, app, ADMIN, ADMIN_PW)
    page.get_by_role("link", name="Inspect").click()
    page.get_by_text(re.compile(r"on \d+ labelled answers")).wait_for(timeout=120_000)
    slider = page.locator('[data-testid="stSlider"]').filter(has_text="Threshold").get_by_role("slider")
    for _attempt in range(6):  # the page may rerun once more after its first scoring, resetting the tab
        page.get_by_role("tab", name="Threshold").click()
        try:
            slider.wait_for(state="visible", timeout=5_000)
            break
        except Exception:
            continue
    slider.wait_for(state="visible", timeout=10_000)
    readings = []
    for key in ("End", "Home"):
        slider.focus()
        slider.press(key)
        page.wait_for_timeout(1_500)  # the fragment reruns; only the lookup happens
        readings.append((_metric(page, "Flagged"), _metric(page, "Recall")))
    assert readings[0] != readings[1], readings
    assert readings[1][1] == "1.000"  # threshold 0 flags everything

    page.get_by_role("tab", name="Errors").click()
    caption = page.get_by_text(re.compile(r"At threshold 0\.00: \d+ false positives")).inner_text()
    assert int(re.search(r"(\d+) false positives", caption).group(1)) > 0
    table = page.locator('[data-testid="stDataFrame"]').filter(visible=True).first
    box = table.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # the first row's selection marker
    heatmap = page.locator('.plh-root[data-doc-id^="inspect-"]')
    heatmap.wait_for(timeout=30_000)
    row_id = int(heatmap.get_attribute("data-doc-id").split("-")[1])
    assert labels.get(row_id) == "Supported" or row_id not in labels  # a false positive: gold supported
    assert heatmap.get_attribute("data-focus-token") is not None  # scrolled to and flashed
    page.get_by_role("link", name=f"Correct #{row_id} in Annotate").wait_for(timeout=10_000)
    page.get_by_role("link", name=f"Review #{row_id}").click()
    picker = page.locator('[data-testid="stSelectbox"]').filter(has_text="Answer")
    picker.wait_for(timeout=30_000)

    def shown() -> str:  # the picked value may sit in the combobox's input
        return picker.evaluate(
            "el => el.textContent + ' ' + [...el.querySelectorAll('input')]"
            ".map(i => i.value + ' ' + (i.getAttribute('aria-label') || '')).join(' ')"
        )

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and f"#{row_id}" not in shown():
        page.wait_for_timeout(200)
    assert f"#{row_id}" in shown(), shown()  # the Review page opened that very answer
