"""The queue's rules and the team figures without a database, and the storage they read from.

The rules (`core.analysis.queue_order`, `queue_reasons`, `team_stats`) run on plain rows; the
storage functions (`db.queue`, `db.team`) return rows and plain data that those rules take.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pytest

import db.users as users
from core.analysis.queue_order import QueueItem, check_queue_args, matches, rank, score_stats, search_term
from core.analysis.queue_reasons import QueueCounts, reason, summary_line
from core.analysis.team_stats import kappa_against_gold, median_seconds_per_item, word_offsets
from core.base.errors import UserError
from core.base.types import Span
from core.orchestration.team import agreement_items, team_progress
from core.orchestration.work_queue import counts
from db.annotations import save_annotation_set
from db.engine import transaction
from db.queue import queue_counts
from db.team import labelled_answers, team_activity

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _row(id: int, *, assigned: bool = False, n_annotators: int = 0, completion: str = "", conversation=None):
    return SimpleNamespace(
        id=id,
        assignment_id=1 if assigned else None,
        n_annotators=n_annotators,
        completion=completion,
        conversation=conversation if conversation is not None else [],
    )


def test_rank_puts_assigned_first_and_missing_values_last():
    rows = [_row(1), _row(2, assigned=True), _row(3), _row(4)]
    stats = [(0.9, 0.4), (0.1, 0.4), (None, None), (0.95, 0.05)]
    by_risk = sorted(range(4), key=lambda i: rank("risk", rows[i], stats[i], None))
    assert [rows[i].id for i in by_risk] == [2, 4, 1, 3]
    by_uncertainty = sorted(range(4), key=lambda i: rank("uncertainty", rows[i], stats[i], None))
    assert [rows[i].id for i in by_uncertainty] == [2, 4, 1, 3]
    found = {1: 0.2, 3: 0.8}
    by_disagreement = sorted(range(4), key=lambda i: rank("disagreement", rows[i], stats[i], found.get(rows[i].id)))
    assert [rows[i].id for i in by_disagreement] == [2, 3, 1, 4]


def test_score_stats_reads_float32_blobs_and_skips_nan():
    blob = np.array([0.2, np.nan, 0.8], dtype="<f4").tobytes()
    (top, distance), missing = score_stats([blob, None], 0.5)
    assert top == pytest.approx(0.8)
    assert distance == pytest.approx(0.3)
    assert missing == (None, None)


def test_search_matches_text_in_questions_or_answer_or_the_number():
    row = _row(12, completion="Lviv was founded", conversation=[{"role": "user", "content": "Who founded LVIV?"}])
    assert matches(row, "lviv") and matches(row, "#12") and matches(row, "12")
    assert not matches(row, "content") and not matches(row, "#13")
    assert search_term("   ") is None and search_term(" x ") == "x"
    with pytest.raises(UserError, match="at most 200"):
        search_term("x" * 201)


@pytest.mark.parametrize(
    "args, message",
    [
        (("nope", "assigned", 0.5, 10), "unknown label state"),
        ((None, "nope", 0.5, 10), "unknown sort"),
        ((None, "risk", float("nan"), 10), "threshold"),
        ((None, "risk", 0.5, 0), "limit"),
    ],
)
def test_queue_arguments_are_checked_before_any_query(args, message):
    with pytest.raises(UserError, match=message):
        check_queue_args(*args)


def test_reasons_and_summary_are_sentences_from_plain_data():
    item = QueueItem(1, "d", "train", "", False, None, None, 1, False, None, None)
    assert reason(item) == "1 other labelled it: needs a second"
    overlap = QueueItem(1, "d", "train", "", False, None, None, 1, False, None, None, needed=2)
    assert reason(overlap) == "1 of 2 annotators labelled it (overlap 2 on this dataset)"
    assert reason(QueueItem(1, "d", "train", "", True, None, 3, 0, False, None, None)) == "you labelled it (v3)"
    line = summary_line(QueueCounts(assigned=1, unlabelled=2, needs_second=1))
    assert line.startswith("Your queue: 1 answer assigned to you and 2 answers nobody has labelled yet.")
    assert "needs a second annotator" in line and "you skipped" not in line


def test_team_figures_from_plain_data():
    times = [T0, T0 + timedelta(seconds=30), T0 + timedelta(seconds=90), T0 + timedelta(hours=2)]
    assert median_seconds_per_item(times) == 45.0  # the two-hour break is not counted
    assert median_seconds_per_item(times[:1]) is None
    assert word_offsets("in  1903 ") == [(0, 2), (4, 8)]
    offsets = [(0, 2), (3, 7)]
    same = [Span(3, 7, "Not Supported")]
    items = [(offsets, {"gold": same, "ann": same}), (offsets, {"gold": [], "ann": []})]
    assert kappa_against_gold(items, ["ann", "gold"]) == {"ann": pytest.approx(1.0)}
    assert kappa_against_gold(items, ["ann"]) == {}


@pytest.fixture()
def labelled(sqlite_db, make_generation, monkeypatch):
    """Two annotators and gold on one answer, one answer nobody labelled."""
    with transaction(sqlite_db.sessions) as session:
        ann, bob = users.add_user(session, "ann", "password123"), users.add_user(session, "bob", "password123")
        first = make_generation(session, "Lviv was founded in 1256.").id
        make_generation(session, "Kyiv is old.")
        for who, spans in ((ann, [Span(20, 24, "Supported")]), (bob, [Span(0, 4, "Not Supported")])):
            save_annotation_set(session, first, spans, owner=who, expected_version=0, actor=who)
        save_annotation_set(session, first, [Span(20, 24, "Supported")], owner=None, expected_version=0, actor=ann)
    return sqlite_db, first


def test_storage_returns_plain_data_the_rules_take(labelled):
    database, first = labelled
    with transaction(database.sessions) as session:
        ann = users.get_user(session, "ann")
        assert queue_counts(session, ann, now=T0) == {"mine": 1, "unlabelled": 1}
        assert counts(session, ann, now=T0) == QueueCounts(mine=1, unlabelled=1)
        answers = labelled_answers(session, "test-set", include_gold=True)
        assert [(a.generation_id, sorted(a.sets)) for a in answers] == [(first, ["ann", "bob", "gold"])]
        assert [a.generation_id for a in labelled_answers(session, "test-set")] == [first]
        activity = {a.name: a for a in team_activity(session)}
        assert (activity["ann"].items_done, activity["ann"].spans_labelled) == (1, 1)


def test_agreement_items_and_team_progress_put_storage_and_rules_together(labelled):
    database, first = labelled
    with transaction(database.sessions) as session:
        items, annotators, ids = agreement_items(session, "test-set")
        assert (annotators, ids) == (["ann", "bob"], [first])
        assert items[0][0][:2] == [(0, 4), (5, 8)]  # no stored tokens: words
        rows = {row["name"]: row for row in team_progress(session, "test-set")}
    assert rows["ann"]["kappa_vs_gold"] == pytest.approx(1.0)
    assert rows["bob"]["kappa_vs_gold"] is not None and rows["bob"]["kappa_vs_gold"] < 1.0
    assert rows["bob"]["items_done"] == 1
