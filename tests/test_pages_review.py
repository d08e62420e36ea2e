"""Review and Annotate page logic with AppTest on a real SQLite file."""

from __future__ import annotations

import pytest

from core.base.types import Generation, Span, TokenTrace
from tests.support.apptest import plain, sign_in

ANSWER = "Lviv was founded in 1256 by Daniel."


@pytest.fixture()
def env(app_database):
    from db.annotations import save_annotation_set
    from db.generations import add_generation, get_or_create_dataset
    from db.users import add_user

    words = [(0, 4), (4, 8), (8, 16), (16, 19), (19, 24), (24, 27), (27, 34), (34, 35)]
    trace = TokenTrace(list(range(len(words))), [ANSWER[a:b] for a, b in words], words, [-1.0] * 8, [1.0] * 8)
    with app_database.sessions() as session, session.begin():
        add_user(session, "boss", "boss-password", role="admin")
        alice = add_user(session, "alice", "alice-password")
        bob = add_user(session, "bob", "bob-password-1")
        dataset = get_or_create_dataset(session, "set1")
        gen = Generation([{"role": "user", "content": "Who founded Lviv?"}, {"role": "assistant", "content": ANSWER}])
        row = add_generation(session, dataset, gen, trace=trace)
        save_annotation_set(
            session,
            row.id,
            [Span(0, 4, "Supported"), Span(20, 24, "Not Supported")],
            owner=alice,
            expected_version=0,
            actor=alice,
        )
        save_annotation_set(
            session,
            row.id,
            [Span(0, 4, "Supported"), Span(20, 24, "Supported")],
            owner=bob,
            expected_version=0,
            actor=bob,
        )
        generation_id = row.id
    return app_database, generation_id


def test_review_shows_disagreement_and_saves_merged_gold(env):
    database, generation_id = env
    at = sign_in("boss", "boss-password")
    at.switch_page("pages/review.py")
    at.run()
    assert not at.exception, at.exception
    captions = [c.value for c in at.caption]
    # the header's ranges are the rows' ranges (it said 19–24, the token " 1256", before)
    assert any("Disagreements at characters 20–24" in c and "19" not in c for c in captions), captions
    radios = [r for r in at.radio if plain(r.label).startswith("'1256'")]
    assert radios and set(radios[0].options) == {"alice", "bob", "none"}
    # what each person said, not only who
    assert plain(radios[0].label) == "'1256' (20–24) — alice: hallucinated '1256' · bob: supported '1256'"
    radios[0].set_value("alice")
    next(b for b in at.button if b.label == "Save merged gold").click()
    at.run()
    from db.annotations import get_set, spans_of
    from db.events import list_events

    with database.sessions() as session:
        gold = get_set(session, generation_id, None)
        assert [(s.start, s.end, s.label) for s in spans_of(gold)] == [(0, 4, "Supported"), (20, 24, "Not Supported")]
        events = list_events(session, action="review.gold")
        assert events and events[0].detail == "merged span by span"


def test_agreement_tab_reports_pairs(env):
    at = sign_in("boss", "boss-password")
    at.switch_page("pages/review.py")
    at.run()
    assert not at.exception, at.exception
    frames = [df.value for df in at.dataframe]
    pairs = next(f for f in frames if "Cohen's κ (4 labels)" in f.columns)
    assert list(pairs[["annotator A", "annotator B"]].iloc[0]) == ["alice", "bob"]
    # headings people read, numbers rounded for reading
    assert not any("_" in str(column) for frame in frames for column in frame.columns)
    numbers = [v for frame in frames for v in frame.select_dtypes("float").to_numpy().ravel() if v == v]
    assert numbers and all(round(v, 3) == v for v in numbers)


def test_assignment_form(env):
    database, _ = env
    at = sign_in("boss", "boss-password")
    at.switch_page("pages/review.py")
    at.run()
    at.multiselect[0].set_value(["alice", "bob"])
    at.number_input[0].set_value(2)
    next(b for b in at.button if b.label == "Assign").click()
    at.run()
    assert any("assignments" in s.value for s in at.success)


def test_annotator_cannot_review(env):
    at = sign_in("alice", "alice-password")
    at.switch_page("pages/review.py")
    at.run()
    errors = [e.value for e in at.error]
    assert any("not have access" in e for e in errors), errors
    assert len(at.tabs) == 0 and len(at.radio) == 0


@pytest.fixture()
def three(app_database):
    """Three answers of one dataset: #a disputed in two places, #b in one, #c labelled by one person."""
    from db.annotations import save_annotation_set
    from db.generations import add_generation, get_or_create_dataset
    from db.users import add_user

    words = [(0, 4), (4, 8), (8, 16), (16, 19), (19, 24), (24, 27), (27, 34), (34, 35)]
    trace = TokenTrace(list(range(len(words))), [ANSWER[a:b] for a, b in words], words, [-1.0] * 8, [1.0] * 8)
    sets = [
        (
            [Span(0, 4, "Supported"), Span(20, 24, "Not Supported")],
            [Span(0, 4, "Not Supported"), Span(28, 34, "Supported")],
        ),
        (
            [Span(0, 4, "Supported"), Span(20, 24, "Not Supported")],
            [Span(0, 4, "Supported"), Span(20, 24, "Supported")],
        ),
        ([Span(20, 24, "Not Supported")], None),
    ]
    ids = []
    with app_database.sessions() as session, session.begin():
        add_user(session, "boss", "boss-password", role="admin")
        alice = add_user(session, "alice", "alice-password")
        bob = add_user(session, "bob", "bob-password-1")
        dataset = get_or_create_dataset(session, "set1")
        for n, (mine, theirs) in enumerate(sets):
            question = f"Who founded Lviv? ({n + 1})"  # one answer per question (the same one is stored once)
            gen = Generation([{"role": "user", "content": question}, {"role": "assistant", "content": ANSWER}])
            row = add_generation(session, dataset, gen, trace=trace)
            save_annotation_set(session, row.id, mine, owner=alice, expected_version=0, actor=alice)
            if theirs is not None:
                save_annotation_set(session, row.id, theirs, owner=bob, expected_version=0, actor=bob)
            ids.append(row.id)
    return app_database, ids


def test_saving_gold_confirms_moves_to_the_next_unsettled_answer_and_drops_the_settled_one(three):
    database, (most, some, single) = three
    at = sign_in("boss", "boss-password", "pages/review.py")
    assert not at.exception, at.exception
    picker = at.selectbox(key="rev-pick")
    assert picker.options == [f"#{most}", f"#{some}", f"#{single}"]  # most disagreement first
    assert picker.value == most
    # the merged gold is previewed as a heatmap before saving
    assert "**Merged gold (preview)** — what saving stores, underlined in each label's colour" in [
        plain(m.value) for m in at.markdown
    ]
    next(b for b in at.button if b.label == "Save merged gold").click().run()
    assert not at.exception, at.exception
    assert [plain(s.value) for s in at.success] == [
        f"Gold saved. Answer #{most} has gold version 1. Now showing #{some}, the next unsettled answer."
    ]
    picker = at.selectbox(key="rev-pick")
    assert picker.value == some
    assert picker.options == [f"#{some}", f"#{single}", f"#{most}"]  # the settled one left the top
    # the last unsettled one next, then nothing is left
    next(b for b in at.button if b.label == "Save merged gold").click().run()
    assert at.selectbox(key="rev-pick").value == single
    next(b for b in at.button if b.label == "Save merged gold").click().run()
    assert [plain(s.value) for s in at.success] == [
        f"Gold saved. Answer #{single} has gold version 1. Every other answer in this dataset has gold."
    ]
    assert at.selectbox(key="rev-pick").value == single
    from db.annotations import get_set

    with database.sessions() as session:
        assert all(get_set(session, g, None).version == 1 for g in (most, some, single))


def test_taking_one_set_whole_also_moves_on(three):
    database, (most, some, _single) = three
    at = sign_in("boss", "boss-password", "pages/review.py")
    at.selectbox(key=f"whole-{most}").set_value("bob").run()
    next(b for b in at.button if b.key == f"use-{most}").click().run()
    assert not at.exception, at.exception
    assert [plain(s.value) for s in at.success] == [
        f"Gold saved. Answer #{most}'s gold is now bob's set. Now showing #{some}, the next unsettled answer."
    ]
    assert at.selectbox(key="rev-pick").value == some
    from db.annotations import get_set, spans_of

    with database.sessions() as session:
        assert [(s.start, s.end, s.label) for s in spans_of(get_set(session, most, None))] == [
            (0, 4, "Not Supported"),
            (28, 34, "Supported"),
        ]


def test_flags_show_as_a_badge_and_are_never_filtered_away_by_the_dataset(env):
    """#25 friction 11: a flag in another dataset than the one Review shows was hidden, and
    nothing told a reviewer on another page that flags were waiting."""
    from db.comments import add_comment
    from db.generations import add_generation, get_or_create_dataset
    from db.users import get_user

    database, _generation_id = env
    with database.sessions() as session, session.begin():
        other = get_or_create_dataset(session, "aaa-first")  # sorts first: the dataset Review opens on
        gen = Generation([{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "Rome."}])
        add_generation(session, other, gen)
        flagged = get_generation_in(session, "set1")
        add_comment(session, flagged, "is 1256 right?", author=get_user(session, "alice"), flag=True)
    at = sign_in("boss", "boss-password")
    assert not at.exception, at.exception
    links = [p.proto.label for p in at.get("page_link")]
    assert "Review · 1 ⚑" in links, links
    at.switch_page("pages/review.py")
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="rev-dataset").value == "aaa-first"
    labels = [getattr(e, "label", "") for e in at.expander]
    assert any("Flagged for review: 1 open flag" in x for x in labels), labels


def get_generation_in(session, dataset: str) -> int:
    from sqlalchemy import select

    from db.models import Dataset
    from db.models import Generation as Row

    return session.scalar(select(Row.id).join(Dataset).where(Dataset.name == dataset))


def test_agreement_tab_shows_the_judge_against_gold_without_a_second_person(app_database):
    """Review → Agreement showed the LLM judge's table only with two annotators: a judge and gold
    (or one person) on the same answers is enough to measure it."""
    from db.annotations import save_annotation_set
    from db.generations import add_generation, get_or_create_dataset
    from db.judges import add_judge
    from db.models import User
    from db.users import add_user

    words = [(0, 4), (4, 8), (8, 16), (16, 19), (19, 24), (24, 27), (27, 34), (34, 35)]
    trace = TokenTrace(list(range(len(words))), [ANSWER[a:b] for a, b in words], words, [-1.0] * 8, [1.0] * 8)
    with app_database.sessions() as session, session.begin():
        boss = add_user(session, "boss", "boss-password", role="admin")
        bot = session.get(User, add_judge(session, "x", base_url="http://127.0.0.1:1/v1", model="m").bot_user_id)
        dataset = get_or_create_dataset(session, "set1")
        gen = Generation([{"role": "user", "content": "Who founded Lviv?"}, {"role": "assistant", "content": ANSWER}])
        row = add_generation(session, dataset, gen, trace=trace)
        judged = [Span(0, 4, "Supported"), Span(20, 24, "Not Supported")]
        save_annotation_set(session, row.id, judged, owner=bot, expected_version=0, actor=bot)
        save_annotation_set(session, row.id, judged[:1], owner=None, expected_version=0, actor=boss)
    at = sign_in("boss", "boss-password")
    at.switch_page("pages/review.py")
    at.run()
    assert not at.exception, at.exception
    judges = next(df.value for df in at.dataframe if "against" in df.value.columns)
    assert set(judges["judge"]) == {"judge-x"} and set(judges["against"]) == {"gold"}
    assert any("two annotators" in i.value for i in at.info)  # the people's figures still need two
