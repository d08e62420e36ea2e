"""The team's day, third round (issue #25), in a real Chromium: Annotate and Review never
show one answer while the page works on another.

- Bug 3: Save (Ctrl+S) stays on the answer even when the save takes it out of "my queue";
  Save & next opens the next row; the queue table's ticked row is always the open answer.
- Bug 4: Review's answer picker follows a change of dataset (it kept the old dataset's answer
  while the page below showed another).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.support.apptest import add_users
from tests.support.browser import CHROMIUM, served_app, sign_in
from tests.support.span_editor import drag_tokens

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium"),
]

ANN, ANN_PW = "ann", "annotator-password"
REV, REV_PW = "rev", "reviewer-password"
EDITOR = ".plh-root[data-token-count]"
ROW_PX, HEADER_PX = 35, 35  # Streamlit's data grid


def _answers(session, dataset_name: str, texts: list[str]) -> list[int]:
    from core.base.types import Generation, TokenTrace
    from db.generations import add_generation, get_or_create_dataset

    dataset = get_or_create_dataset(session, dataset_name)
    ids = []
    for i, text in enumerate(texts):
        bounds = [(m.start(), m.end()) for m in re.finditer(r"\s*\S+", text)]
        trace = TokenTrace(
            list(range(len(bounds))), [text[a:b] for a, b in bounds], bounds, [-1.0] * len(bounds), [1.0] * len(bounds)
        )
        gen = Generation([{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": text}])
        ids.append(add_generation(session, dataset, gen, trace=trace).id)
    return ids


@pytest.fixture(scope="module")
def day3(tmp_path_factory):
    """Five unlabelled answers (dataset "alpha") for Annotate; two labelled answers in each of
    "beta" and "gamma" for Review."""
    from core.base.types import Span
    from db.annotations import save_annotation_set
    from db.users import add_user

    facts: dict = {}

    def prepare(database) -> None:
        add_users(
            database, ("admin", "admin-password-1", "admin"), (ANN, ANN_PW, "annotator"), (REV, REV_PW, "reviewer")
        )
        with database.sessions() as session, session.begin():
            facts["alpha"] = _answers(
                session, "alpha", [f"Answer number {n} says Paris is in France." for n in range(5)]
            )
            bea = add_user(session, "bea", "bea-password-1", role="annotator")
            for name in ("beta", "gamma"):
                facts[name] = _answers(session, name, [f"{name} {n}: Rome is in Italy." for n in range(2)])
                for gid in facts[name]:
                    save_annotation_set(
                        session, gid, [Span(0, 4, "Supported")], owner=bea, expected_version=0, actor=bea
                    )

    with served_app(tmp_path_factory.mktemp("day3"), prepare) as (app, database, _url):
        yield app, database, facts


def _editor_on(page, generation_id: int):
    page.get_by_text(f"Answer #{generation_id}", exact=False).first.wait_for(timeout=60_000)
    root = page.locator(f"{EDITOR}[data-doc-id='gen-{generation_id}']")
    root.wait_for(timeout=60_000)
    page.wait_for_timeout(800)
    return root


def _ticked_ids(page) -> list[int]:
    """The ids of the queue rows the data grid shows as selected (its accessible table)."""
    grid = page.locator('[data-testid="stDataFrame"]').first
    cells = grid.locator('[role="row"][aria-selected="true"] [role="gridcell"]')
    found = []
    for text in cells.all_inner_texts():
        if text.strip().isdigit():
            found.append(int(text.strip()))
    return found


def _wait_ticked(page, generation_id: int, timeout_s: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    ticked: list[int] = []
    while time.monotonic() < deadline:
        ticked = _ticked_ids(page)
        if ticked == [generation_id]:
            return ticked
        page.wait_for_timeout(200)
    return ticked


def _stored(database, generation_id: int):
    from db.annotations import get_set
    from db.users import get_user

    with database.sessions() as session:
        return get_set(session, generation_id, get_user(session, ANN))


def test_save_stays_on_the_answer_and_the_ticked_row_follows_it(page, day3):
    app, database, facts = day3
    ids = facts["alpha"]
    page.goto(f"{app.base}/annotate")
    page.get_by_label("User name").fill(ANN)
    page.get_by_role("textbox", name="Password").fill(ANN_PW)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("combobox", name="Dataset", exact=True).wait_for(timeout=60_000)
    _editor_on(page, ids[0])
    grid = page.locator('[data-testid="stDataFrame"]').first
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + HEADER_PX + 2 * ROW_PX + ROW_PX / 2)  # the third row
    root = _editor_on(page, ids[2])
    assert _wait_ticked(page, ids[2]) == [ids[2]]

    drag_tokens(page, root, 0, 0)
    page.keyboard.press("1")
    page.keyboard.press("Control+s")  # Save: the answer leaves "my queue" (labelled by me) but stays open
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _stored(database, ids[2]) is None:
        page.wait_for_timeout(200)
    assert _stored(database, ids[2]) is not None
    page.wait_for_timeout(2500)  # the save's rerun
    assert page.locator(f"{EDITOR}[data-doc-id='gen-{ids[2]}']").count() == 1
    assert f"generation={ids[2]}" in page.url
    assert _wait_ticked(page, ids[2]) == [ids[2]]  # not the row that moved up into its place

    root = page.locator(f"{EDITOR}[data-doc-id='gen-{ids[2]}']")
    root.evaluate("r => r.focus()")
    page.keyboard.press("Enter")  # Save & next: the next row
    _editor_on(page, ids[3])
    assert _wait_ticked(page, ids[3]) == [ids[3]]
    assert page.errors == []


def _picker_text(page) -> str:
    picker = page.locator('[data-testid="stSelectbox"]').filter(has_text="Answer")
    picker.wait_for(timeout=30_000)
    return picker.evaluate("el => el.textContent + ' ' + [...el.querySelectorAll('input')].map(i => i.value).join(' ')")


def _wait_picker(page, ids: list[int], timeout_s: float = 30.0) -> str:
    """The Answer picker's text once it names one of `ids` (or when time is up)."""
    deadline = time.monotonic() + timeout_s
    shown = _picker_text(page)
    while time.monotonic() < deadline and not any(f"#{g}" in shown for g in ids):
        page.wait_for_timeout(300)
        shown = _picker_text(page)
    return shown


def _choose(page, label: str, option: str) -> None:
    box = page.get_by_role("combobox", name=label, exact=True)
    for _attempt in range(3):
        box.click()
        page.keyboard.type(option)
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=5_000)
            break
        except Exception:
            page.keyboard.press("Escape")
    page.wait_for_timeout(500)


def test_review_picker_follows_a_change_of_dataset(page, day3):
    app, _database, facts = day3
    sign_in(page, app, REV, REV_PW)
    page.get_by_role("link", name="Review").click()
    _choose(page, "Dataset", "beta")
    _wait_picker(page, facts["beta"])
    _choose(page, "Answer", f"#{facts['beta'][1]}")  # a pick of its own, not the default
    assert f"#{facts['beta'][1]}" in _picker_text(page)
    _choose(page, "Dataset", "gamma")
    shown = _wait_picker(page, facts["gamma"])
    assert any(f"#{g}" in shown for g in facts["gamma"]), shown
    assert not any(f"#{g}" in shown for g in facts["beta"]), shown
    assert page.errors == []
