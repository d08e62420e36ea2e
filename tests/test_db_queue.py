"""Work queue: spreading assignments, lease expiry, queue pools and orders, progress."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select

import db.users as users
from core.analysis.queue_order import disagreement, span_f1
from core.base.errors import UserError
from core.base.types import Span
from core.orchestration.work_queue import progress, queue
from core.probes.config import ProbeConfig
from db.annotations import save_annotation_set
from db.assignments import DONE, EXPIRED, assign, expire_leases, mark_done
from db.engine import transaction
from db.models import Assignment, Event, Generation
from db.predictions import store_scores
from db.probes import register_probe

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
TEXT = "Marie Curie won the Nobel Prize in Physics in 1903 and in Chemistry in 1911."


@pytest.fixture()
def world(any_db, make_generation, monkeypatch):
    """Three annotators, a reviewer and nine generations of "test-set", committed."""
    with transaction(any_db.sessions) as session:
        for name in ("alice", "bob", "carol"):
            users.add_user(session, name, "password123")
        users.add_user(session, "rita", "password123", role="reviewer")
        ids = [make_generation(session, f"{TEXT} Item {i}.").id for i in range(9)]
    return any_db, ids


def _user(session, name):
    return users.get_user(session, name)


def _assignments(session):
    return [(a.generation_id, a.user_id, a.status) for a in session.scalars(select(Assignment))]


def _save(session, generation_id, spans, owner, expected=0):
    return save_annotation_set(session, generation_id, spans, owner=owner, expected_version=expected, actor=owner)


def _ids(items):
    return [item.generation_id for item in items]


# --- assign -----------------------------------------------------------------------------


def test_assign_spreads_k2_over_three_users_evenly(world):
    db, ids = world
    with transaction(db.sessions) as session:
        created = assign(session, "test-set", 2, ["alice", "bob", "carol"], actor=_user(session, "rita"), now=T0)
    assert created == 18
    with db.sessions() as session:
        rows = _assignments(session)
        per_user = Counter(user_id for _, user_id, _ in rows)
        per_generation = Counter(generation_id for generation_id, _, _ in rows)
        assert sorted(per_user.values()) == [6, 6, 6]
        assert per_generation == dict.fromkeys(ids, 2)
        assert len(set((g, u) for g, u, _ in rows)) == 18  # never the same user twice per generation
        events = list(session.scalars(select(Event).where(Event.action == "assignment.create")))
        assert len(events) == 1
        assert events[0].after["created"] == 18
        assert events[0].after["per_user"] == {"alice": 6, "bob": 6, "carol": 6}
        assert events[0].dataset == "test-set"
        lease = rows and session.scalar(select(Assignment.lease_expires_at))
        assert lease.replace(tzinfo=UTC) == (T0 + timedelta(hours=24))
    with transaction(db.sessions) as session:  # a second run has nothing left to do
        assert assign(session, "test-set", 2, ["alice", "bob", "carol"], actor=None, now=T0) == 0


def test_assign_prefers_the_least_loaded(world, make_generation):
    db, ids = world
    with transaction(db.sessions) as session:
        assign(session, "test-set", 1, ["alice"], actor=None, now=T0)  # alice: 9 open
        other = [make_generation(session, f"Other {i}", dataset="other").id for i in range(4)]
    with transaction(db.sessions) as session:
        assert assign(session, "other", 1, ["alice", "bob"], actor=None, now=T0) == 4
        alice = _user(session, "alice")
        taken = session.scalars(select(Assignment.user_id).where(Assignment.generation_id.in_(other)))
        assert alice.id not in set(taken)


def test_assign_skips_users_who_already_labelled(world):
    db, ids = world
    with transaction(db.sessions) as session:
        _save(session, ids[0], [Span(0, 5, "Supported")], _user(session, "alice"))
    with transaction(db.sessions) as session:
        created = assign(session, "test-set", 2, ["alice", "bob", "carol"], actor=None, now=T0)
        alice = _user(session, "alice")
        holders = set(session.scalars(select(Assignment.user_id).where(Assignment.generation_id == ids[0])))
    assert created == 17  # alice's own set counts towards k for the first generation
    assert len(holders) == 1 and alice.id not in holders


@pytest.mark.parametrize(
    ("k", "names", "dataset", "message"),
    [
        (0, ["alice"], "test-set", "k .* must be a whole number >= 1"),
        (3, ["alice", "bob"], "test-set", "k = 3 needs at least 3 annotators"),
        (2, ["alice", "alice"], "test-set", "k = 2 needs at least 2 annotators"),
        (1, ["alice", "zed", "yan"], "test-set", "unknown users: zed, yan"),
        (1, ["alice"], "no-such-set", "unknown dataset 'no-such-set'"),
    ],
)
def test_assign_refuses_bad_input_and_writes_nothing(world, k, names, dataset, message):
    db, _ = world
    with db.sessions() as session:
        with pytest.raises(UserError, match=message):
            assign(session, dataset, k, names, actor=None, now=T0)
        session.rollback()
        assert session.scalar(select(func.count(Assignment.id))) == 0
        assert session.scalar(select(func.count(Event.id)).where(Event.action == "assignment.create")) == 0


def test_assign_refuses_a_bad_lease(world):
    db, _ = world
    with db.sessions() as session, pytest.raises(UserError, match="lease hours must be a positive number"):
        assign(session, "test-set", 1, ["alice"], lease_hours=0, actor=None)


# --- leases -----------------------------------------------------------------------------


def test_expired_lease_returns_the_item_and_assign_renews_it(world):
    db, ids = world
    with transaction(db.sessions) as session:
        assign(session, "test-set", 1, ["alice"], lease_hours=1, actor=None, now=T0)
    with transaction(db.sessions) as session:
        alice = _user(session, "alice")
        mine = queue(session, alice, now=T0 + timedelta(minutes=30))
        assert [item.assigned for item in mine] == [True] * 9
        assert mine[0].lease_expires_at == T0 + timedelta(hours=1)
    with transaction(db.sessions) as session:
        alice = _user(session, "alice")
        later = queue(session, alice, now=T0 + timedelta(hours=2))  # reads: a lapsed lease is no lease
        assert [item.assigned for item in later] == [False] * 9
        assert _ids(later) == ids  # still there: unlabelled items stay in the queue
        assert {status for _, _, status in _assignments(session)} == {"assigned"}, "the queue only reads"
        assert expire_leases(session, T0 + timedelta(hours=2)) == 9
        assert {status for _, _, status in _assignments(session)} == {EXPIRED}
        assert expire_leases(session, T0 + timedelta(hours=3)) == 0  # already swept
        assert progress(session, alice, "test-set", now=T0 + timedelta(hours=2))["assigned"] == 0
    with transaction(db.sessions) as session:  # expired work is handed out again (rows renewed)
        alice = _user(session, "alice")
        assert assign(session, "test-set", 1, ["bob", "alice"], actor=None, now=T0 + timedelta(hours=2)) == 9
        per_user = Counter(user_id for _, user_id, status in _assignments(session) if status == "assigned")
        bob = _user(session, "bob")
        assert (per_user[bob.id], per_user[alice.id]) == (5, 4)  # ties go to the order given
        assert session.scalar(select(func.count(Assignment.id))) == 9 + 5  # alice's 4 were renewed in place


def test_expire_leases_counts_only_overdue_open_leases(world):
    db, ids = world
    with transaction(db.sessions) as session:
        assign(session, "test-set", 1, ["alice"], lease_hours=1, actor=None, now=T0)
        mark_done(session, ids[0], _user(session, "alice"))
        assert expire_leases(session, T0 + timedelta(minutes=59)) == 0
        assert expire_leases(session, T0 + timedelta(hours=1)) == 8  # the done one never expires
        statuses = Counter(status for _, _, status in _assignments(session))
        assert statuses == {EXPIRED: 8, DONE: 1}


def test_mark_done_closes_the_assignment(world):
    db, ids = world
    with transaction(db.sessions) as session:
        assign(session, "test-set", 2, ["alice", "bob"], actor=None, now=T0)
        alice = _user(session, "alice")
        _save(session, ids[0], [], alice)
        assert mark_done(session, ids[0], alice) is True
        assert mark_done(session, ids[0], alice) is False  # nothing left to close
        assert mark_done(session, ids[0], _user(session, "carol")) is False  # never assigned
    with transaction(db.sessions) as session:
        alice = _user(session, "alice")
        items = queue(session, alice, now=T0)
        assert ids[0] not in _ids(items)  # done and labelled by someone: out of the default queue
        assert progress(session, alice, "test-set", now=T0) == {"done": 1, "assigned": 9, "total": 9}


# --- queue: pools ----------------------------------------------------------------------


@pytest.fixture()
def labelled(world, make_generation):
    """ids[0] unlabelled, ids[1] alice's set, ids[2] bob's set, ids[3] gold only, ids[4] alice+bob+gold."""
    db, ids = world
    with transaction(db.sessions) as session:
        alice, bob, rita = (_user(session, n) for n in ("alice", "bob", "rita"))
        _save(session, ids[1], [Span(0, 5, "Supported")], alice)
        _save(session, ids[2], [Span(0, 5, "Supported")], bob)
        save_annotation_set(session, ids[3], [], owner=None, expected_version=0, actor=rita)
        _save(session, ids[4], [], alice)
        _save(session, ids[4], [Span(0, 5, "Supported")], alice, expected=1)
        _save(session, ids[4], [], bob)
        save_annotation_set(session, ids[4], [], owner=None, expected_version=0, actor=rita)
    return db, ids


def test_label_state_pools(labelled):
    db, ids = labelled
    unlabelled = [ids[0], *ids[5:]]
    with transaction(db.sessions) as session:
        alice = _user(session, "alice")
        assert _ids(queue(session, alice, now=T0)) == unlabelled
        assert _ids(queue(session, alice, label_state="unlabelled", now=T0)) == unlabelled
        assert _ids(queue(session, alice, label_state="mine", now=T0)) == [ids[1], ids[4]]
        assert _ids(queue(session, alice, label_state="gold", now=T0)) == [ids[3], ids[4]]
        every = queue(session, alice, label_state="any", now=T0)
        assert _ids(every) == ids
        by_id = {item.generation_id: item for item in every}
        assert (by_id[ids[4]].my_version, by_id[ids[4]].n_annotators, by_id[ids[4]].has_gold) == (2, 2, True)
        assert (by_id[ids[3]].my_version, by_id[ids[3]].n_annotators, by_id[ids[3]].has_gold) == (None, 0, True)
        assert (by_id[ids[2]].my_version, by_id[ids[2]].n_annotators, by_id[ids[2]].has_gold) == (None, 1, False)
        assert by_id[ids[0]].preview == f"{TEXT} Item 0."[:120]
        assert by_id[ids[0]].dataset == "test-set" and by_id[ids[0]].split == "train"


def test_default_queue_puts_my_assignments_before_unlabelled(labelled):
    db, ids = labelled
    with transaction(db.sessions) as session:
        alice = _user(session, "alice")
        # alice is assigned ids[2] (bob labelled it) and ids[7]; the leases end at different times
        session.add_all(
            [
                Assignment(
                    generation_id=ids[7], user_id=alice.id, leased_at=T0, lease_expires_at=T0 + timedelta(hours=5)
                ),
                Assignment(
                    generation_id=ids[2], user_id=alice.id, leased_at=T0, lease_expires_at=T0 + timedelta(hours=2)
                ),
            ]
        )
    with transaction(db.sessions) as session:
        alice = _user(session, "alice")
        items = queue(session, alice, now=T0)
        assert _ids(items) == [ids[2], ids[7], ids[0], ids[5], ids[6], ids[8]]
        assert [item.assigned for item in items] == [True, True, False, False, False, False]
        assert _ids(queue(session, alice, limit=3, now=T0)) == [ids[2], ids[7], ids[0]]
        # the assigned item that someone else already labelled is not "unlabelled"
        assert _ids(queue(session, alice, label_state="unlabelled", now=T0))[:2] == [ids[7], ids[0]]
        bob = _user(session, "bob")
        assert ids[7] in _ids(queue(session, bob, now=T0))  # unlabelled, so in bob's queue too
        assert not any(item.assigned for item in queue(session, bob, now=T0))


def test_dataset_and_split_filters(world, make_generation):
    db, ids = world
    with transaction(db.sessions) as session:
        other = make_generation(session, "Elsewhere.", dataset="other")
        session.get(Generation, ids[3]).split = "test"
    with transaction(db.sessions) as session:
        alice = _user(session, "alice")
        assert _ids(queue(session, alice, dataset="other", now=T0)) == [other.id]
        assert _ids(queue(session, alice, dataset="test-set", split="test", now=T0)) == [ids[3]]
        assert other.id in _ids(queue(session, alice, now=T0))
        with pytest.raises(UserError, match="unknown dataset 'nope'"):
            queue(session, alice, dataset="nope")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sort": "random"}, "unknown sort 'random'"),
        ({"label_state": "done"}, "unknown label state 'done'"),
        ({"limit": 0}, "limit must be a whole number >= 1"),
        ({"threshold": float("nan")}, "threshold must be a number"),
        ({"probe_version": 99}, "unknown probe version 99"),
    ],
)
def test_queue_refuses_bad_arguments(world, kwargs, message):
    db, _ = world
    with db.sessions() as session, pytest.raises(UserError, match=message):
        queue(session, _user(session, "alice"), **kwargs)


# --- queue: orders -----------------------------------------------------------------------


def _probe(session, version=None):
    config = ProbeConfig(model_id="tiny-test-model", tokenizer_hash=None, layer=1, hidden_size=4)
    return register_probe(session, artifact_dir="/nowhere", config=config, version=version)


@pytest.fixture()
def scored(world):
    """Probe v1 scores for ids[0..3]; ids[4..8] have none. A second probe v2 scores ids[4] only."""
    db, ids = world
    with transaction(db.sessions) as session:
        _probe(session, 1)
        store_scores(session, 1, ids[0], [0.9, 0.1])  # max 0.9, mean |s-0.5| 0.4
        store_scores(session, 1, ids[1], [0.5, 0.5, float("nan")])  # max 0.5, 0.0 (NaN ignored)
        store_scores(session, 1, ids[2], [0.6, 0.3])  # max 0.6, 0.15
        store_scores(session, 1, ids[3], [0.95, 0.99])  # max 0.99, 0.47
        _probe(session, 2)
        store_scores(session, 2, ids[4], [0.2])
    return db, ids


def test_uncertainty_sort_closest_to_threshold_first(scored):
    db, ids = scored
    with transaction(db.sessions) as session:
        items = queue(session, _user(session, "alice"), sort="uncertainty", probe_version=1, now=T0)
        assert _ids(items) == [ids[1], ids[2], ids[0], ids[3], *ids[4:]]
        assert items[0].uncertainty == pytest.approx(0.0)
        assert items[1].uncertainty == pytest.approx(0.15, abs=1e-6)
        assert items[4].uncertainty is None and items[4].max_score is None
        # another threshold, another order: near 0.95, ids[3] is the least certain
        shifted = queue(session, _user(session, "alice"), sort="uncertainty", probe_version=1, threshold=0.95, now=T0)
        assert _ids(shifted)[0] == ids[3]
        assert _ids(queue(session, _user(session, "alice"), sort="uncertainty", probe_version=1, limit=2, now=T0)) == [
            ids[1],
            ids[2],
        ]


def test_risk_sort_highest_max_score_first(scored):
    db, ids = scored
    with transaction(db.sessions) as session:
        items = queue(session, _user(session, "alice"), sort="risk", probe_version=1, now=T0)
        assert _ids(items) == [ids[3], ids[0], ids[2], ids[1], *ids[4:]]
        assert [item.max_score for item in items[:4]] == pytest.approx([0.99, 0.9, 0.6, 0.5], abs=1e-6)


def test_scores_come_from_the_chosen_or_active_probe(scored):
    db, ids = scored
    from db.probes import set_active

    with transaction(db.sessions) as session:
        alice = _user(session, "alice")
        assert _ids(queue(session, alice, sort="risk", probe_version=2, now=T0))[0] == ids[4]
        assert all(item.max_score is None for item in queue(session, alice, sort="risk", now=T0))  # none active
        # other sorts still show the scores (fetched for the page only)
        plain = {item.generation_id: item for item in queue(session, alice, probe_version=1, now=T0)}
        assert plain[ids[0]].max_score == pytest.approx(0.9, abs=1e-6)
        set_active(session, 2, None)
        assert _ids(queue(session, alice, sort="risk", now=T0))[0] == ids[4]


def test_assigned_items_come_first_whatever_the_sort(scored):
    db, ids = scored
    with transaction(db.sessions) as session:
        alice = _user(session, "alice")
        session.add(Assignment(generation_id=ids[8], user_id=alice.id, leased_at=T0, lease_expires_at=None))
    with transaction(db.sessions) as session:
        alice = _user(session, "alice")
        for sort in ("assigned", "uncertainty", "risk", "disagreement", "newest"):
            items = queue(session, alice, sort=sort, probe_version=1, now=T0)
            assert items[0].generation_id == ids[8] and items[0].assigned, sort
            assert items[0].lease_expires_at is None


def test_disagreement_sort(world):
    db, ids = world
    with transaction(db.sessions) as session:
        alice, bob, carol = (_user(session, n) for n in ("alice", "bob", "carol"))
        same = [Span(0, 11, "Supported")]
        for person in (alice, bob):
            _save(session, ids[0], same, person)  # identical: 0
        _save(session, ids[1], [Span(0, 10, "Not Supported")], alice)
        _save(session, ids[1], [Span(5, 10, "Not Supported")], bob)  # F1 = 2*5/15: 1/3
        _save(session, ids[2], [Span(0, 11, "Supported")], alice)
        _save(session, ids[2], [Span(0, 11, "Not Supported")], bob)  # same chars, other label: 1
        _save(session, ids[3], [Span(0, 11, "Supported")], alice)  # one set: nothing to compare
        _save(session, ids[4], [], alice)
        _save(session, ids[4], [], bob)
        _save(session, ids[4], [Span(0, 4, "Supported")], carol)  # pairs 1, 0, 0: 2/3
    with transaction(db.sessions) as session:
        items = queue(session, _user(session, "rita"), label_state="any", sort="disagreement", now=T0)
        assert _ids(items)[:5] == [ids[2], ids[4], ids[1], ids[0], ids[3]]
        assert [item.disagreement for item in items[:4]] == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])
        assert items[4].disagreement is None
        # other sorts report it too
        plain = {item.generation_id: item for item in queue(session, _user(session, "rita"), label_state="any")}
        assert plain[ids[1]].disagreement == pytest.approx(1 / 3)


def test_newest_sort(world):
    db, ids = world
    with transaction(db.sessions) as session:
        for offset, generation_id in enumerate(ids):
            session.get(Generation, generation_id).created_at = T0 - timedelta(days=offset)
        session.get(Generation, ids[5]).created_at = T0 + timedelta(days=1)
    with transaction(db.sessions) as session:
        items = queue(session, _user(session, "alice"), sort="newest", limit=3, now=T0)
        assert _ids(items) == [ids[5], ids[0], ids[1]]


def test_queue_uses_a_fixed_number_of_statements(any_db, make_generation, monkeypatch):
    """The statement count must not grow with the number of generations."""

    from db.probes import next_version

    with transaction(any_db.sessions) as session:
        for name in ("alice", "bob"):
            users.add_user(session, name, "password123")

    def build(n, dataset):
        with transaction(any_db.sessions) as session:
            alice, bob = _user(session, "alice"), _user(session, "bob")
            version = next_version(session)
            _probe(session, version)
            for i in range(n):
                generation = make_generation(session, f"{TEXT} {dataset} {i}", dataset=dataset)
                store_scores(session, version, generation.id, [i / n, 0.5])
                if i % 2:
                    _save(session, generation.id, [Span(0, 5, "Supported")], alice)
                    _save(session, generation.id, [Span(0, 6, "Supported")], bob)
        return version

    def count(sort, version, dataset):
        statements: list[str] = []

        def record(conn, cursor, statement, *args):
            statements.append(statement)

        event.listen(any_db.engine, "before_cursor_execute", record)
        try:
            with transaction(any_db.sessions) as session:
                alice = _user(session, "alice")
                items = queue(session, alice, dataset=dataset, label_state="any", sort=sort, probe_version=version)
        finally:
            event.remove(any_db.engine, "before_cursor_execute", record)
        return len(statements), len(items)

    small, large = build(6, "small"), build(60, "large")
    for sort in ("assigned", "uncertainty", "disagreement"):
        few, n_few = count(sort, small, "small")
        many, n_many = count(sort, large, "large")
        assert (n_few, n_many) == (6, 60)
        assert many == few <= 10, sort


def test_progress(world):
    db, ids = world
    with transaction(db.sessions) as session:
        alice = _user(session, "alice")
        assert progress(session, alice) == {"done": 0, "assigned": 0, "total": 9}
        assign(session, "test-set", 1, ["alice", "bob"], lease_hours=1, actor=None, now=T0)  # alice: 5
        _save(session, ids[0], [], alice)
        mark_done(session, ids[0], alice)  # assigned and done: counted once
        _save(session, ids[1], [], alice)  # bob's item, labelled by alice anyway
    with transaction(db.sessions) as session:
        alice = _user(session, "alice")
        assert progress(session, alice, "test-set", now=T0) == {"done": 2, "assigned": 5, "total": 9}
        # an hour later the open leases have run out; the done one still counts
        assert progress(session, alice, "test-set", now=T0 + timedelta(hours=1)) == {
            "done": 2,
            "assigned": 1,
            "total": 9,
        }
        with pytest.raises(UserError, match="unknown dataset"):
            progress(session, alice, "nope")


# --- the disagreement measure ----------------------------------------------------------------


def test_span_f1_and_disagreement():
    a = [Span(0, 10, "Not Supported")]
    assert span_f1(a, a) == 1.0
    assert span_f1([], []) == 1.0
    assert span_f1(a, []) == 0.0
    assert span_f1(a, [Span(5, 15, "Not Supported")]) == pytest.approx(0.5)
    assert span_f1(a, [Span(0, 10, "Supported")]) == 0.0
    # overlapping spans of one label are one coverage, not counted twice
    assert span_f1([Span(0, 6, "Supported"), Span(4, 10, "Supported")], [Span(0, 10, "Supported")]) == 1.0
    assert disagreement([a]) is None
    assert disagreement([a, a, []]) == pytest.approx(2 / 3)
