"""Overlap per dataset (#25 friction 4): an admin sets k annotators per answer (for a share of the
answers) once, and the annotators' default queues follow it. Real SQLite file, real actions."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from core.base.errors import UserError
from core.orchestration.actions import annotate, data
from tests.support.actions import events, team_on


@pytest.fixture()
def team(tmp_path):
    found = team_on(tmp_path)
    yield found
    found.storage.dispose()


def _mine(team, who: str) -> list[int]:
    shown = annotate.open_queue(
        team.storage,
        team.actors[who],
        dataset=None,
        split=None,
        label_state=None,
        sort="assigned",
        probe_version=None,
        search=None,
    )
    return [i.generation_id for i in shown.items]


def test_the_queue_follows_the_dataset_overlap_an_admin_sets(team):
    first = team.ids[0]
    annotate.save_annotation(team.storage, team.actors["ann"], first, [], 0)
    assert first not in _mine(team, "bea")  # no overlap: one annotator is enough
    data.set_overlap(team.storage, team.actors["boss"], "set1", 2, 100)
    assert data.overlap_of(team.storage, team.actors["boss"], "set1") == (2, 100)
    assert first in _mine(team, "bea")  # the dataset asks two
    assert first not in _mine(team, "ann")  # not twice for the same person
    shown = annotate.open_queue(
        team.storage,
        team.actors["bea"],
        dataset=None,
        split=None,
        label_state=None,
        sort="assigned",
        probe_version=None,
        search=None,
    )
    assert "overlap asks more annotators" in shown.summary
    annotate.save_annotation(team.storage, team.actors["bea"], first, [], 0)
    assert first not in _mine(team, "bea")
    (event,) = events(team.storage, "dataset.overlap")
    assert event.before == {"k": 1, "percent": 100} and event.after == {"k": 2, "percent": 100}


def test_the_queue_row_says_the_datasets_overlap(team):
    """The row's reason named no k ("1 other labelled it: needs a second"): it says the dataset's."""
    first = team.ids[0]
    annotate.save_annotation(team.storage, team.actors["ann"], first, [], 0)
    data.set_overlap(team.storage, team.actors["boss"], "set1", 3, 100)
    shown = annotate.open_queue(
        team.storage,
        team.actors["bea"],
        dataset=None,
        split=None,
        label_state=None,
        sort="assigned",
        probe_version=None,
        search=None,
    )
    assert shown.reasons[first] == "1 of 3 annotators labelled it (overlap 3 on this dataset)"
    data.set_overlap(team.storage, team.actors["boss"], "set1", 1, 100)  # no overlap: the generic reason
    shown = annotate.open_queue(
        team.storage,
        team.actors["bea"],
        dataset=None,
        split=None,
        label_state="any",
        sort="assigned",
        probe_version=None,
        search=None,
    )
    assert shown.reasons[first] == "1 other labelled it: needs a second"


def test_a_percentage_picks_a_fixed_share_of_the_answers(team):
    annotate.save_annotation(team.storage, team.actors["ann"], team.ids[0], [], 0)
    data.set_overlap(team.storage, team.actors["boss"], "set1", 2, 1)  # ids 1 and 2 are not in the 1%
    assert team.ids[0] not in _mine(team, "bea")
    data.set_overlap(team.storage, team.actors["boss"], "set1", 1, 100)  # back to none
    assert data.overlap_of(team.storage, team.actors["boss"], "set1") == (1, 100)


@pytest.mark.parametrize(("who", "k", "percent"), [("ann", 2, 100), ("boss", 0, 100), ("boss", 2, 0), ("boss", 11, 50)])
def test_bad_overlap_is_one_message_and_changes_nothing(team, who, k, percent):
    with pytest.raises(UserError):
        data.set_overlap(team.storage, team.actors[who], "set1", k, percent)
    assert data.overlap_of(team.storage, team.actors["boss"], "set1") == (1, 100)
    assert events(team.storage, "dataset.overlap") == []


def test_migration_0008_adds_and_removes_the_overlap_columns(team):
    from db.migrate import current_revision, downgrade, head_revision, upgrade

    engine = team.storage.engine
    assert head_revision() == "0008"
    downgrade(engine, "0007")
    assert "overlap_k" not in {c["name"] for c in inspect(engine).get_columns("datasets")}
    upgrade(engine)
    assert current_revision(engine) == "0008"
    assert {"overlap_k", "overlap_percent"} <= {c["name"] for c in inspect(engine).get_columns("datasets")}
