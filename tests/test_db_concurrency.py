"""Twenty writers hammer the same few annotation sets: every save is stored or refused, none lost.

Each writer reads a set's version in one transaction and saves with it in another, like a
browser that loaded the page a moment ago. Stored saves must form an unbroken version
chain per set (1, 2, ..., n, each produced exactly once), the audit log must have exactly
one event per stored save, and the final spans must be those of the save that produced
the final version.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select

import db.users as users
from core.base.types import Span
from db.annotations import ConflictError, get_set, save_annotation_set, spans_of, validate_spans
from db.engine import transaction
from db.models import Event, SpanRow, User

WRITERS = 20
ROUNDS = 25
TEXT = "The city of Lviv was founded in 1256 by King Daniel of Galicia, and it is not the capital."


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: dict[tuple, list[tuple[int, list[Span]]]] = field(default_factory=lambda: defaultdict(list))
    conflicts: int = 0
    errors: list[str] = field(default_factory=list)

    def accept(self, target: tuple, version: int, spans: list[Span]) -> None:
        with self.lock:
            self.accepted[target].append((version, spans))

    def conflict(self) -> None:
        with self.lock:
            self.conflicts += 1

    def fail(self, error: BaseException) -> None:
        with self.lock:
            self.errors.append(f"{type(error).__name__}: {error}")

    @property
    def stored(self) -> int:
        return sum(len(saves) for saves in self.accepted.values())


def _setup(db, make_generation) -> tuple[list[tuple[int, User | None]], list[User]]:
    """Two gold sets and one annotator's own set (edited by several people at once)."""
    with transaction(db.sessions) as session:
        people = [users.add_user(session, f"writer{i}", "password123") for i in range(4)]
        generations = [make_generation(session, TEXT, prompt=f"prompt {i}").id for i in range(3)]
    targets = [(generations[0], None), (generations[1], None), (generations[2], people[0])]
    return targets, people


def _read_version(db, generation_id: int, owner: User | None) -> int:
    with transaction(db.sessions) as session:
        found = get_set(session, generation_id, owner)
        return found.version if found is not None else 0


def _attempt(db, tally: Tally, target, spans: list[Span], expected: int, actor: User) -> None:
    generation_id, owner = target
    try:
        with transaction(db.sessions) as session:
            saved = save_annotation_set(
                session, generation_id, spans, owner=owner, expected_version=expected, actor=actor
            )
            version = saved.version
    except ConflictError:
        tally.conflict()
        return
    except Exception as error:
        tally.fail(error)
        return
    tally.accept(_key(target), version, validate_spans(TEXT, spans))  # only after the commit succeeded


def _key(target) -> tuple[int, str]:
    generation_id, owner = target
    return generation_id, "gold" if owner is None else owner.name


def _writer(db, tally: Tally, barrier: threading.Barrier, index: int, targets, people) -> None:
    rng = random.Random(index)
    actor = people[index % len(people)]
    barrier.wait()
    for round_ in range(ROUNDS):
        # Round 0 spreads everyone over all targets: several writers race to create each set.
        target = targets[index % len(targets)] if round_ == 0 else rng.choice(targets)
        expected = _read_version(db, target[0], target[1])
        time.sleep(rng.random() * 0.003)
        spans = [Span(index, index + 1, "supported"), Span(40 + round_, 41 + round_, "hallucinated", f"w{index}")]
        _attempt(db, tally, target, spans, expected, actor)


def _run_writers(db, targets, people) -> Tally:
    tally = Tally()
    barrier = threading.Barrier(WRITERS)
    threads = [
        threading.Thread(target=_writer, args=(db, tally, barrier, i, targets, people), daemon=True)
        for i in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a writer hung"
    return tally


def _events_by_set(session) -> dict[int, list[Event]]:
    found: dict[int, list[Event]] = defaultdict(list)
    for event in session.scalars(select(Event).where(Event.entity == "annotation_set").order_by(Event.id)):
        found[event.entity_id].append(event)
    return found


def _as_spans(data: dict) -> list[Span]:
    return [Span(s["start"], s["end"], s["label"], s["note"]) for s in data["spans"]]


def _check_set(session, target, saves, events) -> None:
    saves = sorted(saves, key=lambda save: save[0])
    versions = [version for version, _ in saves]
    assert versions == list(range(1, len(saves) + 1)), f"{_key(target)}: versions {versions} are not 1..n"
    stored = get_set(session, target[0], target[1])
    assert stored.version == len(saves)
    assert spans_of(stored) == saves[-1][1], "final spans are not those of the last accepted save"
    assert [e.after["version"] for e in events] == versions
    assert [_as_spans(e.after) for e in events] == [spans for _, spans in saves]
    chain = [_as_spans(e.before) for e in events[1:]]
    assert chain == [spans for _, spans in saves[:-1]], "each save must start from the previous stored spans"


def _verify(db, targets, tally: Tally) -> None:
    assert tally.errors == []
    assert tally.stored + tally.conflicts == WRITERS * ROUNDS
    assert tally.conflicts > 0 and tally.stored >= len(targets), "the test produced no contention"
    with db.sessions() as session:
        saves_logged = session.scalar(select(func.count(Event.id)).where(Event.action == "annotation.save"))
        assert saves_logged == tally.stored
        events = _events_by_set(session)
        final_span_count = 0
        for target in targets:
            stored = get_set(session, target[0], target[1])
            _check_set(session, target, tally.accepted[_key(target)], events[stored.id])
            final_span_count += len(stored.spans)
        assert session.scalar(select(func.count(SpanRow.id))) == final_span_count, "orphaned span rows"


def _hammer(db, make_generation, monkeypatch) -> Tally:
    targets, people = _setup(db, make_generation)
    started = time.monotonic()
    tally = _run_writers(db, targets, people)
    elapsed = time.monotonic() - started
    print(f"{db.engine.dialect.name}: {tally.stored} stored, {tally.conflicts} conflicts in {elapsed:.1f} s")
    _verify(db, targets, tally)
    return tally


def test_concurrent_writers_sqlite(sqlite_db, make_generation, monkeypatch):
    _hammer(sqlite_db, make_generation, monkeypatch)


@pytest.mark.postgres
def test_concurrent_writers_postgres(pg_db, make_generation, monkeypatch):
    _hammer(pg_db, make_generation, monkeypatch)
