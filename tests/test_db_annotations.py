"""Annotation sets: validation, versioned saves, conflicts that change nothing, events, undo."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

import db.users as users
from core.base.errors import UserError
from core.base.types import Span
from db.annotations import (
    ConflictError,
    get_set,
    owner_key,
    save_annotation_set,
    sets_for_generation,
    spans_of,
    undo_last,
    validate_spans,
)
from db.engine import transaction
from db.models import GOLD_OWNER, Event, SpanRow

TEXT = "Marie Curie won the Nobel Prize in Physics in 1903 and in Chemistry in 1911."
#       0         1         2         3         4         5         6         7
#       0123456789012345678901234567890123456789012345678901234567890123456789012345


@pytest.fixture()
def world(any_db, make_generation, monkeypatch):
    """Two annotators, a reviewer and one generation, committed."""
    with transaction(any_db.sessions) as session:
        people = {name: users.add_user(session, name, "password123") for name in ("alice", "bob")}
        people["rita"] = users.add_user(session, "rita", "password123", role="reviewer")
        generation_id = make_generation(session, TEXT).id
    return any_db, generation_id, people


def _save(db, generation_id, spans, *, owner, expected, actor):
    with transaction(db.sessions) as session:
        saved = save_annotation_set(session, generation_id, spans, owner=owner, expected_version=expected, actor=actor)
        return saved.version, spans_of(saved)


def _state(db, generation_id, owner):
    """(version, spans, number of events, number of span rows): everything a save can touch."""
    with db.sessions() as session:
        found = get_set(session, generation_id, owner)
        events = session.scalar(select(func.count(Event.id)).where(Event.entity == "annotation_set"))
        rows = session.scalar(select(func.count(SpanRow.id)))
        return (found.version if found else 0), (spans_of(found) if found else []), events, rows


# --- validate_spans -----------------------------------------------------------------------


def test_validate_canonicalises_sorts_and_deduplicates():
    spans = [
        Span(12, 20, "hallucinated"),
        Span(0, 11, " supported "),
        Span(12, 20, "Not Supported"),
        Span(0, 5, "SUPPORTED"),
    ]
    assert validate_spans(TEXT, spans) == [
        Span(0, 5, "Supported"),
        Span(0, 11, "Supported"),
        Span(12, 20, "Not Supported"),
    ]


def test_validate_allows_touching_spans_and_same_label_overlap():
    spans = [Span(5, 10, "Supported"), Span(0, 5, "Not Supported"), Span(3, 5, "Not Supported")]
    assert validate_spans(TEXT, spans) == [
        Span(0, 5, "Not Supported"),
        Span(3, 5, "Not Supported"),
        Span(5, 10, "Supported"),
    ]


@pytest.mark.parametrize(
    ("span", "message"),
    [
        (Span(-1, 3, "Supported"), "span -1-3 \\(Supported\\) is outside the text"),
        (Span(5, 5, "Supported"), "span 5-5 \\(Supported\\) is outside the text"),
        (Span(7, 4, "Supported"), "span 7-4"),
        (Span(70, len(TEXT) + 1, "Supported"), f"need 0 <= start < end <= {len(TEXT)}"),
        (Span(0, 3, "maybe"), "unknown label 'maybe'"),
    ],
)
def test_validate_rejects_bad_spans(span, message):
    with pytest.raises(UserError, match=message):
        validate_spans(TEXT, [Span(20, 30, "Supported"), span])


def test_validate_names_both_overlapping_spans():
    with pytest.raises(UserError, match=r"span 0-11 \(Supported\) overlaps span 6-15 \(Not Supported\)"):
        validate_spans(TEXT, [Span(6, 15, "hallucinated"), Span(0, 11, "supported")])


def test_validate_counts_code_points():
    text = "Café 😀 ok"
    assert validate_spans(text, [Span(0, len(text), "N/A")]) == [Span(0, 9, "N/A")]
    with pytest.raises(UserError):
        validate_spans(text, [Span(0, 10, "N/A")])


# --- saving -------------------------------------------------------------------------------


def test_owner_keys(world):
    _, _, people = world
    assert owner_key(None) == GOLD_OWNER == "gold"
    assert owner_key(people["alice"]) == f"user:{people['alice'].id}"


def test_first_save_then_update_replaces_spans(world):
    db, gid, people = world
    alice = people["alice"]
    assert _save(db, gid, [Span(0, 11, "supported")], owner=alice, expected=0, actor=alice) == (
        1,
        [Span(0, 11, "Supported")],
    )
    v2 = [Span(12, 15, "hallucinated", note="it was 1903"), Span(0, 11, "supported")]
    assert _save(db, gid, v2, owner=alice, expected=1, actor=alice) == (
        2,
        [Span(0, 11, "Supported"), Span(12, 15, "Not Supported", "it was 1903")],
    )
    assert _state(db, gid, alice)[3] == 2, "old span rows are gone"
    with db.sessions() as session:
        stored = get_set(session, gid, alice)
        assert (stored.owner, stored.annotator_id, stored.updated_by) == (f"user:{alice.id}", alice.id, alice.id)
        events = list(session.scalars(select(Event).order_by(Event.id).where(Event.entity == "annotation_set")))
    assert [e.action for e in events] == ["annotation.save", "annotation.save"]
    assert all(e.entity_id == stored.id and e.generation_id == gid and e.dataset == "test-set" for e in events)
    assert events[0].before == {"version": 0, "spans": []}
    assert events[1].before == {"version": 1, "spans": [{"start": 0, "end": 11, "label": "Supported", "note": None}]}
    assert events[1].after["version"] == 2 and len(events[1].after["spans"]) == 2


def test_sets_are_per_owner(world):
    db, gid, people = world
    alice, bob, rita = people["alice"], people["bob"], people["rita"]
    _save(db, gid, [Span(0, 5, "supported")], owner=alice, expected=0, actor=alice)
    _save(db, gid, [Span(0, 5, "hallucinated")], owner=bob, expected=0, actor=bob)
    _save(db, gid, [Span(0, 11, "supported")], owner=None, expected=0, actor=rita)
    with db.sessions() as session:
        found = {s.owner: (s.version, spans_of(s)) for s in sets_for_generation(session, gid)}
    assert found == {
        f"user:{alice.id}": (1, [Span(0, 5, "Supported")]),
        f"user:{bob.id}": (1, [Span(0, 5, "Not Supported")]),
        "gold": (1, [Span(0, 11, "Supported")]),
    }


def test_stale_save_is_a_conflict_naming_who_saved_and_changes_nothing(world):
    db, gid, people = world
    alice, rita = people["alice"], people["rita"]
    _save(db, gid, [Span(0, 5, "supported")], owner=None, expected=0, actor=alice)
    _save(db, gid, [Span(0, 11, "supported")], owner=None, expected=1, actor=alice)
    _save(db, gid, [Span(12, 15, "hallucinated")], owner=None, expected=2, actor=rita)  # rita saves v3
    before = _state(db, gid, None)
    with pytest.raises(ConflictError) as caught:
        _save(db, gid, [Span(0, 30, "N/A")], owner=None, expected=2, actor=alice)  # alice still holds v2
    error = caught.value
    assert str(error) == "conflict: rita saved version 3 after you loaded version 2; your changes were not saved"
    assert (error.current_version, error.saved_by, error.current_spans) == (3, "rita", [Span(12, 15, "Not Supported")])
    assert isinstance(error, UserError)
    assert _state(db, gid, None) == before


def test_first_save_racing_an_existing_set_is_a_conflict(world):
    db, gid, people = world
    alice, bob = people["alice"], people["bob"]
    _save(db, gid, [Span(0, 5, "supported")], owner=None, expected=0, actor=bob)
    before = _state(db, gid, None)
    with pytest.raises(ConflictError, match="bob saved version 1 after you loaded version 0") as caught:
        _save(db, gid, [Span(0, 11, "supported")], owner=None, expected=0, actor=alice)
    assert caught.value.current_spans == [Span(0, 5, "Supported")]
    assert _state(db, gid, None) == before


def test_unique_constraint_conflict_keeps_the_outer_transaction_usable(world, monkeypatch):
    """Force the INSERT path against an existing set: the savepoint absorbs the IntegrityError."""
    import db.annotations as annotations

    db, gid, people = world
    bob = people["bob"]
    _save(db, gid, [Span(0, 5, "supported")], owner=None, expected=0, actor=bob)
    with transaction(db.sessions) as session:
        with pytest.raises(ConflictError, match="version 1 after you loaded version 0"):
            save_annotation_set(session, gid, [Span(0, 3, "N/A")], owner=None, expected_version=0, actor=bob)
        assert annotations._insert_first(session, gid, None, bob) is None
        users.add_user(session, "carol", "password123")  # the transaction still works
    with db.sessions() as session:
        assert users.get_user(session, "carol").name == "carol"


def test_a_conflict_when_the_loaded_version_is_ahead_or_the_set_is_missing(world):
    db, gid, people = world
    alice = people["alice"]
    with pytest.raises(ConflictError, match="no longer exists") as caught:
        _save(db, gid, [Span(0, 5, "supported")], owner=alice, expected=4, actor=alice)
    assert caught.value.current_version == 0
    _save(db, gid, [Span(0, 5, "supported")], owner=alice, expected=0, actor=alice)
    with pytest.raises(ConflictError, match="stored version is 1, not the version 4"):
        _save(db, gid, [Span(0, 5, "supported")], owner=alice, expected=4, actor=alice)


@pytest.mark.parametrize(
    "spans",
    [
        [Span(0, 5, "supported"), Span(3, 8, "hallucinated")],
        [Span(0, len(TEXT) + 1, "supported")],
        [Span(0, 5, "perhaps")],
    ],
)
def test_invalid_spans_change_nothing(world, spans):
    db, gid, people = world
    alice = people["alice"]
    _save(db, gid, [Span(0, 11, "supported")], owner=alice, expected=0, actor=alice)
    before = _state(db, gid, alice)
    with pytest.raises(UserError):
        _save(db, gid, spans, owner=alice, expected=1, actor=alice)
    assert _state(db, gid, alice) == before


def test_unknown_generation_and_bad_version(world):
    db, gid, people = world
    with pytest.raises(UserError, match="unknown generation 999999"):
        _save(db, 999999, [], owner=None, expected=0, actor=None)
    with pytest.raises(UserError, match="expected version"):
        _save(db, gid, [], owner=None, expected=-1, actor=None)


def test_custom_action_and_detail_are_logged(world):
    db, gid, _ = world
    with transaction(db.sessions) as session:
        save_annotation_set(
            session,
            gid,
            [Span(0, 5, "Supported")],
            owner=None,
            expected_version=0,
            actor=None,
            action="annotation.import",
            detail="from paper.jsonl",
        )
    with db.sessions() as session:
        event = session.scalar(select(Event).where(Event.entity == "annotation_set"))
    assert (event.action, event.detail, event.user_id) == ("annotation.import", "from paper.jsonl", None)


def test_long_lived_session_sees_other_sessions_saves(world):
    db, gid, people = world
    alice = people["alice"]
    _save(db, gid, [Span(0, 5, "supported")], owner=alice, expected=0, actor=alice)
    with db.sessions() as reader:
        assert spans_of(get_set(reader, gid, alice)) == [Span(0, 5, "Supported")]
        reader.commit()
        _save(db, gid, [Span(6, 11, "supported")], owner=alice, expected=1, actor=alice)
        fresh = get_set(reader, gid, alice)
        assert (fresh.version, spans_of(fresh)) == (2, [Span(6, 11, "Supported")])


# --- undo -----------------------------------------------------------------------------------


def test_undo_restores_previous_spans_as_a_new_version(world):
    db, gid, people = world
    alice, rita = people["alice"], people["rita"]
    first, second = [Span(0, 11, "Supported")], [Span(12, 15, "Not Supported")]
    _save(db, gid, first, owner=None, expected=0, actor=alice)
    _save(db, gid, second, owner=None, expected=1, actor=alice)
    with transaction(db.sessions) as session:
        undone = undo_last(session, gid, None, actor=rita)
        assert (undone.version, spans_of(undone), undone.updated_by) == (3, first, rita.id)
    with db.sessions() as session:
        last = session.scalar(select(Event).order_by(Event.id.desc()).limit(1))
    assert (last.action, last.user_id) == ("annotation.undo", rita.id)
    assert last.before["version"] == 2 and last.after["version"] == 3
    with transaction(db.sessions) as session:  # the undo is itself undoable
        assert spans_of(undo_last(session, gid, None, actor=rita)) == second
    with transaction(db.sessions) as session:
        assert spans_of(undo_last(session, gid, None, actor=rita)) == first


def test_undo_of_first_save_empties_the_set(world):
    db, gid, people = world
    alice = people["alice"]
    _save(db, gid, [Span(0, 11, "Supported")], owner=alice, expected=0, actor=alice)
    with transaction(db.sessions) as session:
        undone = undo_last(session, gid, alice, actor=alice)
        assert (undone.version, spans_of(undone)) == (2, [])


def test_undo_without_a_set(world):
    db, gid, people = world
    with transaction(db.sessions) as session:
        with pytest.raises(UserError, match="nothing to undo"):
            undo_last(session, gid, people["bob"], actor=people["bob"])


def test_unknown_owner_is_not_reported_as_a_conflict(world):
    from db.models import User

    db, gid, _ = world
    ghost = User(id=987654, name="ghost", password_hash="x", role="annotator")
    with pytest.raises(UserError, match="unknown owner or actor") as caught:
        _save(db, gid, [Span(0, 5, "supported")], owner=ghost, expected=0, actor=None)
    assert not isinstance(caught.value, ConflictError)
