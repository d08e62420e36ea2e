"""Finding 5 in a real Chromium: text other users control (a question, an answer, a span note, a comment, a
dataset name, a user name) never makes a reader's browser fetch an image or show a link.

Every page where the hostile text appears is opened while every request to the payload's
address is counted: zero. The address is a closed port on this machine, so nothing leaves it.
"""

from __future__ import annotations

import json

import pytest

from tests.support.apptest import add_users
from tests.support.browser import served_app, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

TARGET = "127.0.0.1:9"
IMAGE = f"![x](http://{TARGET}/t.png)"
LINK = f"[click](http://{TARGET}/)"
HTML = f'<img src=http://{TARGET}/h.png onerror="window.__pwned=1">'
# Guidelines are an admin's markdown (links are theirs to write), but raw HTML never renders.
GUIDE_HTML = '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=1</script> <b>bold</b>'
PAYLOAD = f"{IMAGE} {LINK} {HTML}"
DATASET = f"set {IMAGE} {LINK} {HTML}"
# Names with "/" are refused now (finding 7), so the hostile account predates that rule:
# it is written straight into the table, as an old database would hold it.
HOSTILE = "eve ![x](http:" + TARGET + ") [click](http:" + TARGET + ') <img src=x onerror="window.__pwned=1">'


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from argon2 import PasswordHasher

    from core.orchestration.imports import import_file
    from db.models import User
    from db.users import name_key

    def prepare(database) -> None:
        add_users(database, ("boss", "boss-password", "admin"))
        answer = f"Lviv was founded in 1256. {PAYLOAD}"
        record = {
            "conversation": [
                {"role": "user", "content": f"Tell me about Lviv {PAYLOAD}"},
                {"role": "assistant", "content": answer},
            ],
            "spans": [{"start": 20, "end": 24, "label": "Supported", "note": PAYLOAD}],
        }
        with database.sessions() as session, session.begin():
            session.add(
                User(
                    name=HOSTILE,
                    name_key=name_key(HOSTILE),
                    role="annotator",
                    active=True,
                    failed_logins=0,
                    password_hash=PasswordHasher().hash("eve-password"),
                )
            )
            session.flush()
            import_file(
                session,
                (json.dumps(record) + "\n").encode(),
                dataset=DATASET,
                as_user=HOSTILE,
                actor=None,
                source_name="hostile.jsonl",
            )
            # issue #14: a flagged comment (Annotate, Review) and guidelines with raw HTML (an admin's
            # markdown renders, raw HTML never does)
            from sqlalchemy import select

            from db.comments import add_comment
            from db.guidelines import save as save_guidelines
            from db.models import Generation
            from db.users import get_user

            eve = session.scalar(select(User).where(User.name == HOSTILE))
            add_comment(session, session.scalar(select(Generation.id)), PAYLOAD, author=eve, flag=True)
            save_guidelines(session, f"# Rules\n\n{GUIDE_HTML}", actor=get_user(session, "boss"), expected_version=0)

    with served_app(tmp_path_factory.mktemp("markdown"), prepare) as (app, database, _url):
        yield app, database


def _watch(page) -> list[str]:
    hits: list[str] = []
    page.on("request", lambda request: hits.append(request.url) if TARGET in request.url else None)
    return hits


def _nothing_live(page) -> None:
    assert page.locator(f'a[href*="{TARGET}"]').count() == 0
    assert page.locator(f'img[src*="{TARGET}"]').count() == 0
    assert page.evaluate("window.__pwned") is None


def test_hostile_text_loads_nothing_on_any_page_that_shows_it(page, served, chromium):
    from sqlalchemy import select

    from db.models import Generation

    app, database = served
    with database.sessions() as session:
        generation_id = session.scalar(select(Generation.id))
    hits = _watch(page)
    sign_in(page, app, "boss", "boss-password")
    # Annotate: the question in the chat bubble, the dataset in the header line, the note in tooltips
    page.goto(f"{app.base}/annotate?generation={generation_id}")
    page.get_by_text("Tell me about Lviv").first.wait_for(timeout=120_000)
    page.get_by_text(DATASET.split(" ")[0]).first.wait_for(timeout=30_000)
    page.get_by_text("Guidelines (v1)").first.click()  # and the open comments: the flagged one
    page.get_by_text("Rules").first.wait_for(timeout=30_000)
    page.get_by_text("<b>bold</b>", exact=False).first.wait_for(timeout=30_000)  # shown as text
    assert page.locator('img[src="x"]').count() == 0 and page.locator("b:text('bold')").count() == 0
    _nothing_live(page)
    # Review: the annotator's name, the dataset, the answer text in the merge radio labels, the flags
    page.goto(f"{app.base}/review?generation={generation_id}")
    page.get_by_text("Gold set").first.wait_for(timeout=120_000)
    page.get_by_text("Flagged for review").first.wait_for(timeout=30_000)
    page.get_by_text("eve").first.wait_for(timeout=30_000)
    _nothing_live(page)
    # Data: the datasets table and the typed-name delete confirmation
    page.goto(f"{app.base}/data")
    page.get_by_role("tab", name="Datasets").click()
    page.get_by_text("Type the dataset's name").first.wait_for(timeout=60_000)
    _nothing_live(page)
    # Users: the hostile name in the table and in the team progress
    page.goto(f"{app.base}/users")
    page.get_by_text("Add a user").first.wait_for(timeout=60_000)
    _nothing_live(page)
    # the hostile user's own sidebar
    other = chromium.new_context()
    try:
        eve = other.new_page()
        eve_hits = _watch(eve)
        sign_in(eve, app, HOSTILE, "eve-password")
        _nothing_live(eve)
    finally:
        other.close()
    assert hits == [] and eve_hits == [], f"requests to the payload's address: {hits + eve_hits}"
