"""The team's day, third round, bug 1: saving merged gold never erases gold.

A merge starts from the current gold; a save that would remove gold spans says which and
needs a confirmation; gold has a history with revert. Unit tests for the rules, storage tests
on a real SQLite file, and the Review page with AppTest.
"""

from __future__ import annotations

import pytest

from core.base.types import Generation, Span
from core.text.editing import CURRENT_GOLD, NO_SPAN, default_pick, diff_sets, merge_groups, removed_spans
from tests.support.apptest import plain, sign_in

ANSWER = "The capital of Afghanistan is Kabul."
KABUL = Span(30, 35, "Supported")


# --- the rules --------------------------------------------------------------------------


def test_a_merge_with_only_gold_keeps_the_gold():
    groups = diff_sets({}, [KABUL])
    assert [default_pick(g) for g in groups] == [CURRENT_GOLD]
    assert merge_groups(groups) == [KABUL]


def test_a_gold_span_no_annotator_marked_is_kept_by_default_and_annotators_still_decide_elsewhere():
    people = {"ann": [Span(4, 11, "Not Supported")], "bob": [Span(4, 11, "Not Supported")]}
    groups = diff_sets(people, [KABUL])
    assert [(g.start, g.end) for g in groups] == [(4, 11), (30, 35)]
    assert [default_pick(g) for g in groups] == ["ann", CURRENT_GOLD]
    assert merge_groups(groups) == [Span(4, 11, "Not Supported"), KABUL]
    # the gold is no vote: where the people agree, their version wins over an older gold
    groups = diff_sets({"ann": [Span(30, 35, "Not Supported")], "bob": [Span(30, 35, "Not Supported")]}, [KABUL])
    assert default_pick(groups[0]) == "ann"
    assert groups[0].agree, "the people agree; the gold's older version is not a disagreement"
    # and the reviewer may still drop it explicitly
    assert merge_groups(diff_sets({}, [KABUL]), {0: NO_SPAN}) == []


def test_removed_spans_counts_dropped_and_changed_spans():
    assert removed_spans([KABUL], [KABUL]) == []
    assert removed_spans([KABUL], []) == [KABUL]
    assert removed_spans([KABUL], [Span(30, 35, "Not Supported")]) == [KABUL]
    assert removed_spans([KABUL], [Span(30, 35, "supported", "a note")]) == [], "a note alone is no removal"


# --- storage ----------------------------------------------------------------------------


@pytest.fixture()
def demo_like(app_database):
    """Answer #1 with gold (Kabul, Supported) imported, and no annotator set: the demo's shape."""
    from db.annotations import save_annotation_set
    from db.generations import add_generation, get_or_create_dataset
    from db.users import add_user

    with app_database.sessions() as session, session.begin():
        add_user(session, "boss", "boss-password", role="admin")
        add_user(session, "rita", "rita-password", role="reviewer")
        dataset = get_or_create_dataset(session, "demo")
        gen = Generation(
            [
                {"role": "user", "content": "What is the capital of Afghanistan?"},
                {"role": "assistant", "content": ANSWER},
            ]
        )
        row = add_generation(session, dataset, gen)
        save_annotation_set(session, row.id, [KABUL], owner=None, expected_version=0, actor=None)
        generation_id = row.id
    return app_database, generation_id


def _gold(database, generation_id):
    from db.annotations import get_set, spans_of

    with database.reading() as session:
        found = get_set(session, generation_id, None)
        return found.version, spans_of(found)


def test_a_save_that_removes_gold_is_refused_until_confirmed_and_history_reverts(demo_like):
    from db.review import GoldRemovalError, gold_history, revert_gold, save_gold
    from db.users import get_user

    database, generation_id = demo_like
    with database.sessions() as session:
        with pytest.raises(GoldRemovalError, match=r"remove 1 gold span \('Kabul'\)"), session.begin():
            save_gold(
                session, generation_id, [], expected_version=1, reviewer=get_user(session, "rita"), decision="merged"
            )
    assert _gold(database, generation_id) == (1, [KABUL]), "nothing written"
    with database.sessions() as session, session.begin():
        save_gold(
            session,
            generation_id,
            [],
            expected_version=1,
            reviewer=get_user(session, "rita"),
            decision="merged",
            allow_removal=True,
        )
    assert _gold(database, generation_id) == (2, [])
    with database.reading() as session:
        history = gold_history(session, generation_id)
    assert [(h.version, h.spans, h.by) for h in history] == [(1, [KABUL], None), (2, [], "rita")]
    with database.sessions() as session, session.begin():
        revert_gold(session, generation_id, 1, expected_version=2, reviewer=get_user(session, "rita"))
    assert _gold(database, generation_id) == (3, [KABUL])
    with database.reading() as session:
        assert gold_history(session, generation_id)[-1].decision == "reverted to gold version 1"
        with pytest.raises(Exception, match="no gold version 9"):
            revert_gold(session, generation_id, 9, expected_version=3, reviewer=get_user(session, "rita"))


# --- the Review page --------------------------------------------------------------------


def test_review_save_merged_gold_keeps_existing_gold_and_asks_before_removing(demo_like):
    database, generation_id = demo_like
    at = sign_in("rita", "rita-password")
    at.switch_page("pages/review.py")
    at.run()
    assert not at.exception, at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "1 spans in the merged gold set; current gold version 1" in captions or "1 span" in captions, captions
    next(b for b in at.button if b.label == "Save merged gold").click()
    at.run()
    assert not at.exception, at.exception
    version, spans = _gold(database, generation_id)
    assert spans == [KABUL], "the merge started from the current gold"
    # dropping the gold span: the page says what would go and asks first
    at.switch_page("pages/review.py")
    at.run()
    radio = next(r for r in at.radio if plain(r.label).startswith("'Kabul'"))
    radio.set_value(NO_SPAN)
    at.run()
    assert any("removes 1 span of the current gold" in plain(w.value) for w in at.warning)
    next(b for b in at.button if b.label == "Save merged gold").click()
    at.run()
    assert _gold(database, generation_id) == (version, [KABUL]), "not removed without a confirmation"
    assert any("would remove 1 gold span" in plain(e.value) for e in at.error)
    radio = next(r for r in at.radio if plain(r.label).startswith("'Kabul'"))
    radio.set_value(NO_SPAN)
    next(b for b in at.button if b.label.startswith("Save and remove")).click()
    at.run()
    assert _gold(database, generation_id) == (version + 1, [])
    # and the history brings it back
    at.switch_page("pages/review.py")
    at.run()
    next(b for b in at.button if b.label == f"Revert gold to v{version}").click()
    at.run()
    assert _gold(database, generation_id) == (version + 2, [KABUL])
