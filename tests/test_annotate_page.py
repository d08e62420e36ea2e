"""The Annotate page through an annotator's day (issue #14, items 7-10), with AppTest on a real
SQLite file: the open answer in the URL, why answers are (not) in my queue and the
second-annotator queue, skip, comments and flags (and the Review page's list of them),
guidelines, search, and why there are no risk colours. The reload itself is tested in Chromium
(tests/e2e/test_annotator_day_browser.py)."""

from __future__ import annotations

import os
import re

import pytest

from core.base.types import Generation, Span, TokenTrace
from core.text.markdown import md_escape
from tests.support.apptest import plain, sign_in

ANSWERS = [
    "Lviv was founded in 1256 by Daniel.",
    "Marie Curie won the Nobel Prize in 1903.",
    "The café opened in 1911 in Kraków.",
    "Paris is the capital of France.",
]
HOSTILE = "![x](http://127.0.0.1:9/t.png) [click](http://evil.example) <img src=x onerror=alert(1)>"


def _trace(text: str) -> TokenTrace:
    """Word-ish tokens (each keeps its leading space) so the editor needs no model."""
    bounds = [(m.start(), m.end()) for m in re.finditer(r"\s*\S+", text)]
    return TokenTrace(
        list(range(len(bounds))), [text[a:b] for a, b in bounds], bounds, [-1.0] * len(bounds), [1.0] * len(bounds)
    )


@pytest.fixture()
def day(app_database):
    """ann labelled the first answer; bea, a reviewer and an admin have not labelled anything."""
    from db.annotations import save_annotation_set
    from db.generations import add_generation, get_or_create_dataset
    from db.users import add_user

    with app_database.sessions() as session, session.begin():
        ann = add_user(session, "ann", "ann-password")
        add_user(session, "bea", "bea-password")
        add_user(session, "rita", "rita-password", role="reviewer")
        add_user(session, "boss", "boss-password", role="admin")
        dataset = get_or_create_dataset(session, "set1")
        ids = []
        for i, text in enumerate(ANSWERS):
            gen = Generation([{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": text}])
            ids.append(add_generation(session, dataset, gen, trace=_trace(text)).id)
        save_annotation_set(session, ids[0], [Span(0, 4, "Supported")], owner=ann, expected_version=0, actor=ann)
    return app_database, ids


def annotate(name: str, password: str, generation: int | None = None):
    at = sign_in(name, password)
    if generation is not None:
        at.query_params["generation"] = str(generation)
    at.switch_page("pages/annotate.py")
    at.run()
    assert not at.exception, at.exception
    return at


def open_answer(at) -> int:
    shown = [m.value for m in at.markdown if m.value.startswith("**Answer #")]
    assert shown, "no answer is open"
    return int(re.match(r"\*\*Answer #(\d+)", shown[0]).group(1))


def table_ids(at) -> list[int]:
    return [int(x) for x in at.dataframe(key="ann-table").value["#"]]


# --- item 7: the answer open is in the URL ------------------------------------------------


def test_the_open_answer_is_kept_in_the_url_and_a_link_still_wins(day):
    _database, ids = day
    at = annotate("bea", "bea-password")
    assert open_answer(at) == ids[1]  # ids[0] was labelled by ann: not in bea's default queue
    assert at.query_params.get("generation") == str(ids[1])  # a reload reopens it
    at.button(key=f"ann-skip-{ids[1]}").click()
    at.run()
    assert open_answer(at) == ids[2] and at.query_params.get("generation") == str(ids[2])  # moving on updates it
    at.query_params["generation"] = str(ids[3])  # a link (or the address bar) names another answer: it wins
    at.run()
    assert open_answer(at) == ids[3] and at.query_params.get("generation") == str(ids[3])
    at.run()  # and stays (the session's own answer no longer fights the URL)
    assert open_answer(at) == ids[3]


def test_a_reload_reopens_the_answer_in_the_url_even_outside_the_filters(day):
    _database, ids = day
    at = annotate("ann", "ann-password", generation=ids[0])  # labelled by ann: not in her default queue
    assert open_answer(at) == ids[0]
    assert ids[0] == table_ids(at)[0] or ids[0] not in table_ids(at)


# --- item 8: why an answer is (not) in my queue; the second-annotator queue ------------------


def test_the_queue_says_why_and_offers_the_answers_that_need_a_second_annotator(day):
    _database, ids = day
    at = annotate("bea", "bea-password")
    line = " ".join(c.value for c in at.caption)
    assert "Your queue: 0 answers assigned to you and 3 answers nobody has labelled yet." in line
    assert "1 answer one other annotator labelled" in line
    table = at.dataframe(key="ann-table").value
    assert list(table.columns) == ["#", "answer", "why", "risk", "flag"]
    assert set(table["why"]) == {"nobody labelled it yet"}
    at.button(key="ann-go-second").click()
    at.run()
    assert at.selectbox(key="ann-state").value == "second"
    table = at.dataframe(key="ann-table").value
    assert list(table["#"]) == [ids[0]] and list(table["why"]) == ["1 other labelled it: needs a second"]
    assert open_answer(at) == ids[0]


# --- item 9: skip, comments and flags, guidelines, search -------------------------------------


def test_skip_is_stored_logged_and_leaves_my_queue_until_put_back(day):
    database, ids = day
    from sqlalchemy import select

    from db.models import Event, Skip

    at = annotate("bea", "bea-password")
    at.button(key=f"ann-skip-{ids[1]}").click()
    at.run()
    assert ids[1] not in table_ids(at)
    with database.sessions() as session:
        assert [(s.generation_id, s.skipped_at is not None) for s in session.scalars(select(Skip))] == [(ids[1], True)]
        assert session.scalar(select(Event.generation_id).where(Event.action == "annotation.skip")) == ids[1]
    assert "1 answer you skipped" in " ".join(c.value for c in at.caption)
    at.selectbox(key="ann-state").set_value("skipped")
    at.run()
    assert table_ids(at) == [ids[1]] and open_answer(at) == ids[1]
    assert any("You skipped this answer" in c.value for c in at.caption)
    at.button(key=f"ann-unskip-{ids[1]}").click()
    at.run()
    with database.sessions() as session:
        assert session.scalar(select(Skip.id)) is None


def test_a_flagged_comment_is_stored_escaped_and_listed_on_the_review_page(day):
    database, ids = day
    from sqlalchemy import func, select

    from db.models import AnswerComment

    at = annotate("bea", "bea-password")
    at.button(key=f"ann-comment-add-{ids[1]}").click()  # nothing written: one clear message
    at.run()
    assert [plain(e.value) for e in at.error] == ["write a comment (or tick 'Flag for review')"]
    with database.sessions() as session:
        assert session.scalar(select(func.count(AnswerComment.id))) == 0
    at.text_area(key=f"ann-comment-text-{ids[1]}").input(HOSTILE)
    at.checkbox(key=f"ann-comment-flag-{ids[1]}").check()
    at.button(key=f"ann-comment-add-{ids[1]}").click()
    at.run()
    assert not at.exception, at.exception
    with database.sessions() as session:
        stored = session.scalars(select(AnswerComment)).all()
        assert [(c.generation_id, c.body, c.flagged) for c in stored] == [(ids[1], HOSTILE, True)]
    shown = [m.value for m in at.markdown if "img" in m.value]
    assert shown == [md_escape(HOSTILE, inline=False)]  # through the one escape: no image, link or tag
    assert plain(shown[0]) == HOSTILE.replace("http", "http\u200b")
    assert at.dataframe(key="ann-table").value.set_index("#").loc[ids[1], "flag"] == "⚑"

    review = sign_in("rita", "rita-password", "pages/review.py")
    assert not review.exception, review.exception
    flags = next(df.value for df in review.dataframe if "flagged by" in df.value.columns)
    assert list(flags["answer"]) == [f"#{ids[1]}"] and list(flags["comment"]) == [HOSTILE]
    assert list(flags["flagged by"]) == ["bea"]

    rita = annotate("rita", "rita-password", generation=ids[1])
    rita.button(key=f"ann-comment-resolve-{ids[1]}").click()
    rita.run()
    with database.sessions() as session:
        assert session.scalar(select(AnswerComment.resolved_at)) is not None


def test_guidelines_an_admin_writes_render_as_markdown_without_html(day):
    database, _ids = day
    body = "# Rules\n\nMark **dates** and names.\n\n<b>raw</b> <script>alert(1)</script>"
    boss = annotate("boss", "boss-password")
    boss.text_area(key="ann-guidelines-0").input(body)
    next(b for b in boss.button if b.label == "Save as a new version").click()
    boss.run()
    assert not boss.exception, boss.exception
    from db.guidelines import current

    with database.sessions() as session:
        saved = current(session)
        assert (saved.version, saved.author, saved.body) == (1, "boss", body)

    bea = annotate("bea", "bea-password")
    assert not any(t.key and t.key.startswith("ann-guidelines") for t in bea.text_area)  # annotators only read
    panel = next(e for e in bea.expander if e.label == "Guidelines (v1)")
    rendered = [m for m in panel.markdown if m.value == body]
    assert rendered, [m.value for m in panel.markdown]
    assert rendered[0].proto.allow_html is False  # markdown renders, raw HTML never does
    assert any("Version 1, by boss" in c.value for c in panel.caption)


def test_an_admin_demoted_meanwhile_cannot_save_guidelines(day):
    """The role is read from the database on the run that receives the form, not taken from the page
    that drew it: the form is gone and nothing is stored (db.guidelines.save refuses too: see
    tests/test_db_annotator_day.py)."""
    database, _ids = day
    from sqlalchemy import update

    from db.guidelines import current
    from db.models import User

    boss = annotate("boss", "boss-password")
    boss.text_area(key="ann-guidelines-0").input("rules")
    with database.sessions() as session, session.begin():
        session.execute(update(User).where(User.name == "boss").values(role="reviewer"))
    next(b for b in boss.button if b.label == "Save as a new version").click()
    boss.run()
    assert not boss.exception, boss.exception
    assert not any(t.key and t.key.startswith("ann-guidelines") for t in boss.text_area)
    with database.sessions() as session:
        assert current(session) is None


def test_search_filters_the_queue(day):
    _database, ids = day
    at = annotate("bea", "bea-password")
    at.text_input(key="ann-search").input("kraków")
    at.run()
    assert table_ids(at) == [ids[2]] and open_answer(at) == ids[2]
    at.text_input(key="ann-search").input("question 3")
    at.run()
    assert table_ids(at) == [ids[3]]
    at.text_input(key="ann-search").input("nothing like this")
    at.run()
    assert any("Nothing in this queue" in i.value for i in at.info)


# --- item 10: why there are no risk colours -----------------------------------------------------


def test_no_colours_say_the_demo_probe_is_still_training_on_annotate_and_generate(day):
    database, ids = day
    from db.train_runs import beat, create_run, mark_started

    with database.sessions() as session, session.begin():
        run = create_run(session, "seed", {"size": 200}, None)
        mark_started(session, run.id, os.getpid())  # alive: never reaped as a dead worker
        beat(session, run.id, stage="generate", progress=0.4, message="generate: 80/200")
    expected = "The demo probe is still training (step 2 of 3: generating the demo answers, 80 of 200)"
    generate = sign_in("bea", "bea-password")  # lands on Generate
    assert not generate.exception, generate.exception
    assert any(i.value.startswith(expected) for i in generate.info), [i.value for i in generate.info]
    at = annotate("bea", "bea-password")
    assert any(i.value.startswith(expected) for i in at.info), [i.value for i in at.info]
    assert open_answer(at) == ids[1]
