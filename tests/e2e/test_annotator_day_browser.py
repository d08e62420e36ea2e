"""The annotator's day in a real Chromium (issue #14, items 7 and 9).

- Item 7: the answer open is kept in the URL, so a reload reopens the answer that holds the
  unsaved draft (not the first queue item, nor the answer a link first opened), draft and all.
- Item 9: the S key skips the answer (a Streamlit button shortcut beside the editor, which
  leaves the key to the page because the editor does not use it).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.support.apptest import add_users
from tests.support.browser import CHROMIUM, served_app
from tests.support.span_editor import drag_tokens

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium"),
]

ANN, ANN_PW = "ann", "annotator-password"
EDITOR = ".plh-root[data-token-count]"
ANSWERS = [
    "Lviv was founded in 1256 by King Daniel of Galicia.",
    "Marie Curie won the Nobel Prize in 1903.",
    "The café opened in 1911 in Kraków, Poland.",
    "Paris is the capital of France and its largest city.",
    "Mount Everest is 8849 metres high.",
]


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """An admin (else the first-run form shows), one annotator and five answers with their tokens (no demo seed: nothing to wait for)."""
    from core.base.types import Generation, TokenTrace
    from db.generations import add_generation, get_or_create_dataset

    ids: list[int] = []

    def prepare(database) -> None:
        add_users(database, ("admin", "admin-password-1", "admin"), (ANN, ANN_PW, "annotator"))
        with database.sessions() as session, session.begin():
            dataset = get_or_create_dataset(session, "day")
            for i, text in enumerate(ANSWERS):
                bounds = [(m.start(), m.end()) for m in re.finditer(r"\s*\S+", text)]
                trace = TokenTrace(
                    list(range(len(bounds))),
                    [text[a:b] for a, b in bounds],
                    bounds,
                    [-1.0] * len(bounds),
                    [1.0] * len(bounds),
                )
                gen = Generation(
                    [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": text}]
                )
                ids.append(add_generation(session, dataset, gen, trace=trace).id)

    with served_app(tmp_path_factory.mktemp("annotator-day"), prepare) as (app, database, _url):
        yield app, database, ids


def open_in_annotate(page, app, generation_id: int):
    page.goto(f"{app.base}/annotate?generation={generation_id}")
    page.get_by_label("User name").fill(ANN)
    page.get_by_role("textbox", name="Password").fill(ANN_PW)
    page.get_by_role("button", name="Sign in").click()
    return wait_for_answer(page, generation_id)


def wait_for_answer(page, generation_id: int):
    """The editor once it shows `generation_id` (its document id), and the layout has settled."""
    # The first sign-in of a fresh app server loads the model: minutes when every core is busy.
    page.get_by_text(f"Answer #{generation_id}", exact=False).first.wait_for(timeout=180_000)
    root = page.locator(f"{EDITOR}[data-doc-id='gen-{generation_id}']")
    root.wait_for(timeout=60_000)
    page.wait_for_timeout(800)  # toasts and info boxes above the editor move it while they appear
    return root


def url_names(page, generation_id: int, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if re.search(rf"[?&]generation={generation_id}(&|$)", page.url):
            return True
        page.wait_for_timeout(100)
    return False


def stored_set(database, generation_id: int):
    from db.annotations import get_set
    from db.users import get_user

    with database.sessions() as session:
        return get_set(session, generation_id, get_user(session, ANN))


def test_a_reload_reopens_the_answer_with_the_unsaved_draft(page, day):
    app, database, ids = day
    root = open_in_annotate(page, app, ids[2])  # a link opens the third answer
    root.evaluate("r => r.focus()")
    page.keyboard.press("Enter")  # save (nothing) & next: the fourth answer
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and stored_set(database, ids[2]) is None:
        page.wait_for_timeout(200)
    root = wait_for_answer(page, ids[3])
    assert url_names(page, ids[3]), f"moving on left the URL at {page.url}"

    drag_tokens(page, root, 0, 0)  # "Paris"
    page.keyboard.press("1")
    assert "Not Supported" in root.get_attribute("data-spans")
    page.wait_for_timeout(1500)  # the draft also reaches the server (one rerun): nothing changes

    page.reload()
    root = wait_for_answer(page, ids[3])  # not ids[2] (the link), not the first of the queue
    page.wait_for_function(
        "sel => { const r = document.querySelector(sel) || [...document.querySelectorAll('*')]"
        ".map(e => e.shadowRoot).filter(Boolean).map(s => s.querySelector(sel)).find(Boolean);"
        " return r && r.getAttribute('data-draft-restored') === '1'; }",
        arg=EDITOR,
        timeout=30_000,
    )
    spans = root.get_attribute("data-spans")
    assert '"Not Supported"' in spans and '"start":0' in spans.replace(" ", ""), spans
    assert stored_set(database, ids[3]) is None  # still a draft: nothing was saved
    assert url_names(page, ids[3])
    assert page.errors == []


def test_the_s_key_skips_the_answer(page, day):
    app, database, ids = day
    from sqlalchemy import select

    from db.models import Skip

    root = open_in_annotate(page, app, ids[4])
    root.evaluate("r => r.focus()")  # the editor has the keyboard: S is not one of its keys
    page.keyboard.press("s")
    deadline = time.monotonic() + 30
    found = None
    while time.monotonic() < deadline and found is None:
        with database.sessions() as session:
            found = session.scalar(select(Skip.generation_id).where(Skip.generation_id == ids[4]))
        page.wait_for_timeout(200)
    assert found == ids[4]
    page.get_by_text(f"Skipped answer #{ids[4]}").first.wait_for(timeout=15_000)
    assert not url_names(page, ids[4], timeout_s=5)  # moved on to another answer
