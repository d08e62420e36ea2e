"""Review: the bundle (annotators, gold, probe spans, disagreements) and saving gold.

Storage reads the record (db.review.review_record); the comparison is pure
(core.analysis.review_compare); the tests take both together, as the Review page's action does.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

import db.users as users
from core.analysis.review_compare import disagreement_ranges, probe_spans
from core.analysis.review_compare import review_bundle as compare
from core.base.errors import UserError
from core.base.types import Span
from core.probes.config import ProbeConfig
from db.annotations import ConflictError, get_set, save_annotation_set, spans_of
from db.arrays import pack_floats, pack_ints, pack_offsets
from db.engine import transaction
from db.models import Event
from db.predictions import store_scores
from db.probes import register_probe
from db.review import GoldRemovalError, pick_annotator, review_record, save_gold


def review_bundle(session, generation_id, probe_version, threshold=0.5, *, include_probe=False):
    """The record storage holds, compared as the Review page shows it."""
    return compare(review_record(session, generation_id, probe_version), threshold, include_probe=include_probe)


TEXT = "Marie Curie won the Nobel Prize in 1903."
TOKENS = ["Marie", " Curie", " won", " the", " Nobel", " Prize", " in", " 1903", "."]
#          0-5      5-11     11-15   15-19   19-25     25-31    31-34  34-39    39-40
SCORES = [0.1, 0.1, 0.6, 0.1, 0.8, 0.9, 0.3, 0.7, 0.1]

ALICE = [Span(0, 11, "Supported"), Span(35, 39, "Not Supported", "wrong year")]
BOB = [Span(0, 11, "Supported"), Span(20, 31, "Not Supported")]


def _offsets(tokens):
    offsets, at = [], 0
    for token in tokens:
        offsets.append((at, at + len(token)))
        at += len(token)
    return offsets


@pytest.fixture()
def world(any_db, make_generation, monkeypatch):
    """alice and bob labelled one tokenised generation; rita reviews; probe v1 scored it."""
    with transaction(any_db.sessions) as session:
        people = {name: users.add_user(session, name, "password123") for name in ("alice", "bob", "carol")}
        people["rita"] = users.add_user(session, "rita", "password123", role="reviewer")
        generation = make_generation(session, TEXT)
        generation.token_ids = pack_ints(list(range(len(TOKENS))))
        generation.token_offsets = pack_offsets(_offsets(TOKENS))
        generation.token_texts = TOKENS
        generation.logprobs = pack_floats([-1.0] * len(TOKENS))
        generation.entropies = pack_floats([0.5] * len(TOKENS))
        for name, spans in (("alice", ALICE), ("bob", BOB)):
            save_annotation_set(
                session, generation.id, spans, owner=people[name], expected_version=0, actor=people[name]
            )
        config = ProbeConfig(model_id="tiny-test-model", tokenizer_hash=None, layer=1, hidden_size=4)
        register_probe(session, artifact_dir="/nowhere", config=config, version=1)
        store_scores(session, 1, generation.id, SCORES)
        register_probe(session, artifact_dir="/nowhere", config=config, version=2)  # never scored it
    return any_db, generation.id


def _reviewer(session, name="rita"):
    return users.get_user(session, name)


def _gold_events(session):
    return list(session.scalars(select(Event).where(Event.action == "review.gold").order_by(Event.id)))


# --- the bundle -------------------------------------------------------------------------


def test_bundle_shows_annotators_probe_and_disagreements(world):
    db, generation_id = world
    with db.sessions() as session:
        bundle = review_bundle(session, generation_id, probe_version=1)
    assert bundle.generation.completion == TEXT
    assert bundle.dataset == "test-set"
    assert bundle.trace.texts == TOKENS
    assert bundle.annotators == {"alice": (1, ALICE), "bob": (1, BOB)}
    assert bundle.gold is None
    assert bundle.probe_scores == pytest.approx(SCORES)
    assert bundle.trace.scores == pytest.approx(SCORES)
    assert bundle.probe_spans == [
        Span(11, 15, "Not Supported", "max 0.600"),
        Span(19, 31, "Not Supported", "max 0.900"),  # " Nobel Prize": one run, its highest score
        Span(34, 39, "Not Supported", "max 0.700"),
    ]
    # tokens " Nobel Prize" (bob only) merge into one range; " 1903" (alice only); " in" agrees
    assert bundle.disagreements == [(19, 31), (34, 39)]


def test_bundle_can_count_the_probe_as_a_source(world):
    db, generation_id = world
    with db.sessions() as session:
        bundle = review_bundle(session, generation_id, probe_version=1, include_probe=True)
    # " won": both people left it alone, the probe flags it
    assert bundle.disagreements == [(11, 15), (19, 31), (34, 39)]
    with db.sessions() as session:
        strict = review_bundle(session, generation_id, probe_version=1, threshold=0.95, include_probe=True)
    assert strict.probe_spans == []
    assert strict.disagreements == [(19, 31), (34, 39)]


def test_bundle_without_probe_or_scores(world):
    db, generation_id = world
    with db.sessions() as session:
        bare = review_bundle(session, generation_id, probe_version=None)
        unscored = review_bundle(session, generation_id, probe_version=2)
        with pytest.raises(UserError, match="unknown probe version 7"):
            review_bundle(session, generation_id, probe_version=7)
        with pytest.raises(UserError, match="unknown generation 999999"):
            review_bundle(session, 999999, probe_version=None)
    for bundle in (bare, unscored):
        assert bundle.probe_scores is None and bundle.probe_spans == []
        assert bundle.trace.scores is None
        assert bundle.disagreements == [(19, 31), (34, 39)]


def test_bundle_of_a_generation_without_tokens_compares_characters(world, make_generation):
    db, _ = world
    with transaction(db.sessions) as session:
        alice, bob = users.get_user(session, "alice"), users.get_user(session, "bob")
        plain = make_generation(session, "Paris is in Spain.").id
        save_annotation_set(
            session, plain, [Span(12, 17, "Not Supported")], owner=alice, expected_version=0, actor=alice
        )
        save_annotation_set(session, plain, [Span(9, 17, "Not Supported")], owner=bob, expected_version=0, actor=bob)
    with db.sessions() as session:
        bundle = review_bundle(session, plain, probe_version=1)
    assert bundle.trace is None and bundle.probe_scores is None
    assert bundle.disagreements == [(9, 12)]


def test_one_annotator_has_nothing_to_disagree_with(world, make_generation):
    db, _ = world
    with transaction(db.sessions) as session:
        alice = users.get_user(session, "alice")
        single = make_generation(session, "Only one opinion.").id
        save_annotation_set(session, single, [Span(0, 4, "Supported")], owner=alice, expected_version=0, actor=alice)
    with db.sessions() as session:
        assert review_bundle(session, single, probe_version=None).disagreements == []


def test_disagreement_helpers_on_hand_made_tokens():
    offsets = [(0, 3), (3, 6), (6, 9), (9, 9)]  # the last token is zero-width (a special token)
    same_chars_other_label = [[Span(0, 6, "Supported")], [Span(0, 6, "Insufficient Information")]]
    assert disagreement_ranges(offsets, same_chars_other_label) == [(0, 6)]
    # a span covering part of a token labels the whole token
    assert disagreement_ranges(offsets, [[Span(4, 5, "Supported")], [Span(3, 6, "Supported")]]) == []
    # the probe is compared on "hallucinated or not": both unverifiable and not-supported count
    people = [[Span(0, 3, "Insufficient Information")], [Span(0, 3, "Not Supported")]]
    assert disagreement_ranges(offsets, people, [0.9, 0.1, 0.1, 0.1]) == [(0, 3)]
    assert disagreement_ranges(offsets, people[:1], [0.9, 0.1, 0.8, 0.9]) == [(6, 9)]
    assert probe_spans(offsets, [0.9, float("nan"), 0.8, 0.9]) == [
        Span(0, 3, "Not Supported", "max 0.900"),
        Span(6, 9, "Not Supported", "max 0.900"),
    ]


# --- gold ---------------------------------------------------------------------------------


def test_save_gold_records_the_decision(world):
    db, generation_id = world
    merged = [Span(0, 11, "Supported"), Span(20, 31, "Not Supported"), Span(35, 39, "Not Supported")]
    with transaction(db.sessions) as session:
        saved = save_gold(
            session, generation_id, merged, expected_version=0, reviewer=_reviewer(session), decision="merged"
        )
        assert (saved.owner, saved.version, spans_of(saved)) == ("gold", 1, merged)
    with db.sessions() as session:
        [event] = _gold_events(session)
        assert event.detail == "merged"
        assert event.user_id == _reviewer(session).id
        assert event.generation_id == generation_id
        assert [s["start"] for s in event.after["spans"]] == [0, 20, 35]
        assert review_bundle(session, generation_id, probe_version=None).gold == (1, merged)


def test_pick_annotator_copies_their_spans(world):
    db, generation_id = world
    with transaction(db.sessions) as session:
        pick_annotator(session, generation_id, "alice", expected_version=0, reviewer=_reviewer(session))
    with db.sessions() as session:  # bob's set drops or changes alice's spans: asked first
        with pytest.raises(GoldRemovalError), session.begin():
            pick_annotator(session, generation_id, "bob", expected_version=1, reviewer=_reviewer(session))
    with transaction(db.sessions) as session:
        saved = pick_annotator(
            session, generation_id, "bob", expected_version=1, reviewer=_reviewer(session), allow_removal=True
        )
        assert saved.version == 2
    with db.sessions() as session:
        assert spans_of(get_set(session, generation_id, None)) == BOB
        assert [e.detail for e in _gold_events(session)] == ["picked alice", "picked bob"]
        assert _gold_events(session)[0].after["spans"][1]["note"] == "wrong year"  # notes travel with the pick


def test_stale_gold_save_conflicts_and_changes_nothing(world):
    db, generation_id = world
    with transaction(db.sessions) as session:
        pick_annotator(session, generation_id, "alice", expected_version=0, reviewer=_reviewer(session))
    with db.sessions() as session:
        with pytest.raises(ConflictError) as caught, session.begin():
            pick_annotator(session, generation_id, "bob", expected_version=0, reviewer=_reviewer(session))
        assert caught.value.current_version == 1 and caught.value.saved_by == "rita"
        with pytest.raises(ConflictError), session.begin():
            save_gold(session, generation_id, [], expected_version=2, reviewer=_reviewer(session), decision="merged")
        assert spans_of(get_set(session, generation_id, None)) == ALICE
        assert len(_gold_events(session)) == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda s, g: save_gold(s, g, [], expected_version=0, reviewer=users.get_user(s, "alice"), decision="x"),
            "only an active reviewer or admin",
        ),
        (
            lambda s, g: save_gold(s, g, [], expected_version=0, reviewer=users.get_user(s, "rita"), decision="  "),
            "needs a decision",
        ),
        (
            lambda s, g: pick_annotator(s, g, "carol", expected_version=0, reviewer=users.get_user(s, "rita")),
            "carol has not labelled generation",
        ),
        (
            lambda s, g: pick_annotator(s, g, "nobody", expected_version=0, reviewer=users.get_user(s, "rita")),
            "unknown user 'nobody'",
        ),
        (
            lambda s, g: save_gold(
                s,
                g,
                [Span(0, 99, "Supported")],
                expected_version=0,
                reviewer=users.get_user(s, "rita"),
                decision="merged",
            ),
            "outside the text",
        ),
    ],
)
def test_bad_gold_saves_are_refused(world, call, message):
    db, generation_id = world
    with db.sessions() as session:
        with pytest.raises(UserError, match=message):
            call(session, generation_id)
        session.rollback()
        assert get_set(session, generation_id, None) is None
        assert session.scalar(select(func.count(Event.id)).where(Event.action == "review.gold")) == 0
