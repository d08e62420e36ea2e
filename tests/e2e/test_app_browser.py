"""The whole app in a real Chromium: log in, generate with the embedded model and watch
coloured tokens arrive, hover, stop, find the answer in the database, role refusal, and
untrusted text in the pasted-conversation mode."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from conftest import CHROMIUM, ROOT, StreamlitApp

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium"),
]

ADMIN, ADMIN_PW = "admin", "admin-password-1"
ANN, ANN_PW = "ann", "annotator-password"
HEATMAP = ".plh-root[data-token-count]"


@pytest.fixture(scope="module")
def probelens(tmp_path_factory):
    """A fresh database with two users and a small demo (answers + an active probe), served."""
    from core.model import get_model
    from core.seed import seed_demo
    from db import open_database
    from db.users import add_user

    tmp = tmp_path_factory.mktemp("app")
    url = f"sqlite:///{tmp / 'probelens.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", url)
        mp.setenv("PROBELENS_PROBES_DIR", str(tmp / "probes"))
        mp.setenv("PROBELENS_CACHE_DIR", str(tmp / "cache"))
        mp.setenv("PROBELENS_MODEL_CACHE_DIR", str(ROOT / "data" / "cache" / "models"))
        mp.setenv("PROBELENS_SEED_DEMO", "0")
        database = open_database(url)
        with database.sessions() as session, session.begin():
            add_user(session, ADMIN, ADMIN_PW, role="admin")
            add_user(session, ANN, ANN_PW, role="annotator")
        seed_demo(database, get_model(None), size=9)
        app = StreamlitApp(ROOT / "app.py")
        try:
            app.wait_ready(timeout=90)
            yield app, database
        finally:
            app.stop()
            database.dispose()


def sign_in(page, app, name: str, password: str) -> None:
    page.goto(app.url())
    page.get_by_label("User name").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"{name} ·").wait_for(timeout=60_000)


def open_settings(page) -> None:
    page.get_by_text("Settings").click()
    try:
        page.get_by_label("Max new tokens").wait_for(state="visible", timeout=5_000)
    except Exception:  # noqa: BLE001 - the first click can land before the expander is live
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
    # A new browser session has to sign in again; then the URL still leads to a refusal.
    page.get_by_label("User name").fill(ANN)
    page.get_by_role("textbox", name="Password").fill(ANN_PW)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("does not have access").wait_for(timeout=30_000)
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
