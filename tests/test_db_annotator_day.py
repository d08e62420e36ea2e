"""The annotator's day in storage (issue #14, items 8-10): skips, comments and flags, guidelines,
text search, the "needs a second annotator" queue, why an answer is (not) in my queue, and why
there are no risk colours. Real SQLite and PostgreSQL (`any_db`)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

import db.users as users
from core.base.errors import UserError
from core.base.types import Span
from core.orchestration.colour_status import no_colour_reason, seed_step
from core.orchestration.work_queue import counts, queue, reason, summary_line
from core.probes.config import ProbeConfig
from db import comments, guidelines, skips
from db.annotations import save_annotation_set
from db.assignments import ASSIGNED, EXPIRED, assign
from db.engine import transaction
from db.models import AnswerComment, Assignment, Event, Guideline, Skip
from db.predictions import store_scores
from db.probes import register_probe, set_active
from db.train_runs import beat, create_run, finish, mark_started

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
TEXTS = [
    "Lviv was founded in 1256 by King Daniel.",
    "Marie Curie won the Nobel Prize in 1903.",
    "Zürich is the largest city of Switzerland.",
    "The café opened in 1911 in Kraków.",
    "Paris is the capital of France.",
]


@pytest.fixture()
def team(any_db, make_generation, monkeypatch):
    """Two annotators, a reviewer, an admin, and five answers of "day-set"."""
    with transaction(any_db.sessions) as session:
        for name, role in (("ann", "annotator"), ("bea", "annotator"), ("rita", "reviewer"), ("boss", "admin")):
            users.add_user(session, name, "password123", role=role)
        ids = [
            make_generation(session, text, dataset="day-set", prompt=f"Question {i} about ROLE content").id
            for i, text in enumerate(TEXTS)
        ]
    return any_db, ids


def _user(session, name):
    return users.get_user(session, name)


def _ids(items):
    return [item.generation_id for item in items]


def _events(session, action):
    return list(session.scalars(select(Event).where(Event.action == action).order_by(Event.id)))


# --- skip --------------------------------------------------------------------------------


def test_a_skip_is_stored_logged_and_leaves_my_default_queue(team):
    db, ids = team
    with transaction(db.sessions) as session:
        ann = _user(session, "ann")
        skips.skip(session, ids[1], ann, now=T0)
    with transaction(db.sessions) as session:
        ann, bea = _user(session, "ann"), _user(session, "bea")
        row = session.scalar(select(Skip))
        assert (row.generation_id, row.user_id) == (ids[1], ann.id)
        assert row.skipped_at.replace(tzinfo=UTC) == T0
        [event] = _events(session, "annotation.skip")
        assert (event.user_id, event.generation_id, event.dataset) == (ann.id, ids[1], "day-set")
        assert ids[1] not in _ids(queue(session, ann, now=T0))
        assert ids[1] in _ids(queue(session, bea, now=T0))  # only the person who skipped
        assert _ids(queue(session, ann, label_state="skipped", now=T0)) == [ids[1]]
        assert [reason(i) for i in queue(session, ann, label_state="skipped")] == ["you skipped it"]
        assert counts(session, ann, dataset="day-set", now=T0).skipped == 1
        skips.skip(session, ids[1], ann, now=T0 + timedelta(hours=1))  # again: one row, time moved
        assert session.scalar(select(func.count(Skip.id))) == 1
        assert skips.skipped_at(session, ids[1], ann) == T0 + timedelta(hours=1)
    with transaction(db.sessions) as session:
        ann = _user(session, "ann")
        assert skips.unskip(session, ids[1], ann) is True
        assert skips.unskip(session, ids[1], ann) is False
        assert ids[1] in _ids(queue(session, ann, now=T0))
        assert len(_events(session, "annotation.unskip")) == 1


def test_skipping_hands_my_assignment_back_and_assign_never_gives_it_to_me_again(team):
    db, ids = team
    with transaction(db.sessions) as session:
        assign(session, "day-set", 1, ["ann"], actor=None, now=T0)
        skips.skip(session, ids[0], _user(session, "ann"), now=T0)
    with transaction(db.sessions) as session:
        ann = _user(session, "ann")
        status = session.scalar(select(Assignment.status).where(Assignment.generation_id == ids[0]))
        assert status == EXPIRED
        assert ids[0] not in _ids(queue(session, ann, now=T0))
        assert assign(session, "day-set", 1, ["ann", "bea"], actor=None, now=T0) == 1
        holder = session.scalar(
            select(Assignment.user_id).where(Assignment.generation_id == ids[0], Assignment.status == ASSIGNED)
        )
        assert holder == _user(session, "bea").id


def test_a_skip_of_no_answer_is_refused_and_writes_nothing(team):
    db, _ids_ = team
    with db.sessions() as session:
        ann = _user(session, "ann")
        for bad in (999_999, "3", None):
            with pytest.raises(UserError, match="unknown answer|whole number"):
                skips.skip(session, bad, ann)
        session.rollback()
        assert session.scalar(select(func.count(Skip.id))) == 0
        assert _events(session, "annotation.skip") == []


# --- comments and flags ------------------------------------------------------------------


def test_a_flag_with_its_comment_reaches_the_reviewers_list_until_resolved(team):
    db, ids = team
    hostile = "![x](http://127.0.0.1:9/t.png) <img src=x onerror=alert(1)> is this Supported?"
    with transaction(db.sessions) as session:
        ann = _user(session, "ann")
        comments.add_comment(session, ids[2], hostile, author=ann, flag=True, now=T0)
        comments.add_comment(session, ids[3], "just a note", author=ann, now=T0)
    with transaction(db.sessions) as session:
        [flag] = comments.open_flags(session, "day-set")
        assert (flag.generation_id, flag.author, flag.body, flag.open_flag) == (ids[2], "ann", hostile, True)
        assert comments.open_flags(session, "other-set") == []
        assert comments.flagged_ids(session, ids) == {ids[2]}
        assert [c.body for c in comments.comments_for(session, ids[3])] == ["just a note"]
        assert len(_events(session, "comment.add")) == 2
        with pytest.raises(UserError, match="only a reviewer"):
            comments.resolve_flags(session, ids[2], actor=_user(session, "bea"))
        assert comments.resolve_flags(session, ids[2], actor=_user(session, "rita")) == 1
    with db.sessions() as session:
        assert comments.open_flags(session) == []
        [done] = comments.comments_for(session, ids[2])
        assert done.resolved_by == "rita" and done.resolved_at is not None and not done.open_flag
        assert len(_events(session, "comment.resolve")) == 1


def test_the_author_may_withdraw_their_own_flag(team):
    db, ids = team
    with transaction(db.sessions) as session:
        comments.add_comment(session, ids[0], "", author=_user(session, "ann"), flag=True)
        assert comments.resolve_flags(session, ids[0], actor=_user(session, "ann")) == 1


@pytest.mark.parametrize(
    ("body", "flag", "message"),
    [
        ("   ", False, "write a comment"),
        ("x" * 2001, True, "at most 2000 characters"),
        ("bell\x07", False, "control characters"),
        (42, False, "must be text"),
    ],
)
def test_a_bad_comment_is_refused_and_writes_nothing(team, body, flag, message):
    db, ids = team
    with db.sessions() as session:
        with pytest.raises(UserError, match=message):
            comments.add_comment(session, ids[0], body, author=_user(session, "ann"), flag=flag)
        session.rollback()
        assert session.scalar(select(func.count(AnswerComment.id))) == 0
        assert _events(session, "comment.add") == []


# --- guidelines --------------------------------------------------------------------------


def test_guidelines_are_versioned_with_who_and_when_and_only_admins_write_them(team):
    db, _ = team
    with transaction(db.sessions) as session:
        assert guidelines.current(session) is None
        boss = _user(session, "boss")
        guidelines.save(session, "# Rules\n\nMark **dates**.", actor=boss, expected_version=0, now=T0)
        guidelines.save(session, "# Rules\n\nMark dates and <b>names</b>.", actor=boss, expected_version=1)
    with db.sessions() as session:
        now = guidelines.current(session)
        assert (now.version, now.author) == (2, "boss")
        assert now.body == "# Rules\n\nMark dates and <b>names</b>."  # stored as written; the page never renders HTML
        assert [g.version for g in guidelines.history(session)] == [2, 1]
        assert guidelines.history(session)[1].created_at == T0
        events = _events(session, "guidelines.save")
        assert [e.after["version"] for e in events] == [1, 2] and events[1].before["version"] == 1


@pytest.mark.parametrize(
    ("who", "body", "expected", "message"),
    [
        ("rita", "rules", 0, "only an admin"),
        ("boss", "   ", 0, "empty"),
        ("boss", "x" * 50_001, 0, "at most 50,000"),
        ("boss", "rules", 3, "someone saved version 0"),
    ],
)
def test_bad_guidelines_are_refused_and_write_nothing(team, who, body, expected, message):
    db, _ = team
    with db.sessions() as session:
        with pytest.raises(UserError, match=message):
            guidelines.save(session, body, actor=_user(session, who), expected_version=expected)
        session.rollback()
        assert session.scalar(select(func.count(Guideline.id))) == 0


def test_a_deactivated_admin_cannot_save_guidelines(team):
    db, _ = team
    with db.sessions() as session:
        boss = _user(session, "boss")
        boss.active = False
        with pytest.raises(UserError, match="only an admin"):
            guidelines.save(session, "rules", actor=boss, expected_version=0)


# --- search ------------------------------------------------------------------------------


def test_text_search_finds_the_answer_or_question_text_and_numbers(team):
    db, ids = team
    with transaction(db.sessions) as session:
        ann = _user(session, "ann")
        assert _ids(queue(session, ann, search="curie")) == [ids[1]]
        assert _ids(queue(session, ann, search="zürich")) == [ids[2]]
        assert _ids(queue(session, ann, search="Kraków")) == [ids[3]]
        assert _ids(queue(session, ann, search="question 4")) == [ids[4]]  # the question
        assert _ids(queue(session, ann, search=f"#{ids[0]}")) == [ids[0]]
        assert _ids(queue(session, ann, search="100%_")) == []  # LIKE wildcards are text
        assert queue(session, ann, search="content") and queue(session, ann, search="role")  # in the questions
        assert _ids(queue(session, ann, search='"role"')) == []  # JSON keys and quotes never match
        assert _ids(queue(session, ann, search="  ")) == ids
        assert _ids(queue(session, ann, search="1", sort="newest", limit=2)) == [ids[3], ids[1]]
        with pytest.raises(UserError, match="at most 200 characters"):
            queue(session, ann, search="x" * 201)


# --- why an answer is (not) in my queue, and the second-annotator queue --------------------


def test_the_second_annotator_sees_why_and_gets_a_queue_of_answers_that_need_them(team):
    db, ids = team
    with transaction(db.sessions) as session:
        ann, bea, rita = _user(session, "ann"), _user(session, "bea"), _user(session, "rita")
        save_annotation_set(session, ids[0], [Span(0, 4, "Supported")], owner=ann, expected_version=0, actor=ann)
        save_annotation_set(session, ids[1], [], owner=ann, expected_version=0, actor=ann)
        save_annotation_set(session, ids[1], [], owner=rita, expected_version=0, actor=rita)
        save_annotation_set(session, ids[2], [], owner=None, expected_version=0, actor=rita)  # gold only
        skips.skip(session, ids[3], bea)
    with transaction(db.sessions) as session:
        bea = _user(session, "bea")
        assert _ids(queue(session, bea)) == [ids[4]]  # the default queue, as before
        found = counts(session, bea, dataset="day-set")
        assert (found.unlabelled, found.needs_second, found.others, found.gold_only, found.skipped) == (1, 1, 1, 1, 1)
        line = summary_line(found)
        assert "1 answer nobody has labelled yet" in line
        assert "1 answer one other annotator labelled" in line and "needs a second annotator" in line
        assert "1 answer you skipped" in line
        assert _ids(queue(session, bea, label_state="second")) == [ids[0]]
        everything = {i.generation_id: reason(i) for i in queue(session, bea, label_state="any")}
        assert everything == {
            ids[0]: "1 other labelled it: needs a second",
            ids[1]: "2 others labelled it",
            ids[2]: "has gold, no annotator",
            ids[3]: "you skipped it",
            ids[4]: "nobody labelled it yet",
        }
        ann = _user(session, "ann")
        assert ids[0] not in _ids(queue(session, ann, label_state="second"))  # never my own
        assert reason(queue(session, ann, label_state="mine")[0]) == "you labelled it (v1)"


def test_counts_follow_the_filters_and_live_assignments(team):
    db, ids = team
    with transaction(db.sessions) as session:
        assign(session, "day-set", 1, ["bea"], lease_hours=1, actor=None, now=T0)
        bea = _user(session, "bea")
        assert counts(session, bea, now=T0).assigned == 5
        assert counts(session, bea, now=T0 + timedelta(hours=2)).unlabelled == 5  # leases ran out
        assert counts(session, bea, split="validation", now=T0).in_my_queue == 0
        with pytest.raises(UserError, match="unknown dataset"):
            counts(session, bea, dataset="no-such-set")


# --- why there are no risk colours --------------------------------------------------------


def _probe(session, version=None):
    config = ProbeConfig(model_id="tiny-test-model", tokenizer_hash=None, layer=1, hidden_size=4)
    return register_probe(session, artifact_dir="/nowhere", config=config, version=version)


def test_the_seed_progress_label_gives_each_figure_its_unit():
    """#25 friction 11: "generate: 80/200 · 4 answers at a time" mixed units in the sidebar."""
    from core.orchestration.colour_status import seed_progress_label

    said = seed_progress_label("generate", "generate: 80/200 · 4 answers at a time")
    assert said == "step 2 of 3, generating the demo answers: 80 of 200 answers"
    assert (
        seed_progress_label("train", "train: 3/10 · loss 0.5") == "step 3 of 3, training the demo probe: 3 of 10 steps"
    )
    assert seed_progress_label("load", "load: 0/1") == "step 1 of 3, loading the model"
    assert seed_progress_label(None, None) == "step 1 of 3, loading the model"


def test_the_seed_stage_is_said_as_a_step(team):
    db, ids = team
    assert seed_step("load") == (1, "loading the model")
    assert seed_step("generate")[0] == 2 and seed_step("train")[0] == 3
    with transaction(db.sessions) as session:
        run = create_run(session, "seed", {"size": 200}, None)
        mark_started(session, run.id, os.getpid())  # this process: alive, so never reaped as dead
        beat(session, run.id, stage="generate", progress=0.4, message="generate: 80/200 · 4 answers at a time")
    with transaction(db.sessions) as session:
        said = no_colour_reason(session, scoring_version=None, generation_id=ids[0])
        assert said.startswith("The demo probe is still training (step 2 of 3: generating the demo answers, 80 of 200)")
        beat(session, run.id, stage="train", progress=0.6, message="train: 3/10 · loss 0.5")
        assert "(step 3 of 3: training the demo probe, 3 of 10)" in no_colour_reason(session, scoring_version=None)
        finish(session, run.id, "failed", error="boom")
        assert "the demo seeding failed" in no_colour_reason(session, scoring_version=None)


def test_no_colours_reasons_for_probes_and_scores(team):
    db, ids = team
    with transaction(db.sessions) as session:
        assert no_colour_reason(session, scoring_version=None).startswith("No probe yet: label some answers")
        _probe(session, 1)
        assert no_colour_reason(session, scoring_version=None).startswith("No probe is active")
        set_active(session, 1, None)
        assert "v1 was trained for another language model" in no_colour_reason(session, scoring_version=None)
        store_scores(session, 1, ids[0], [0.1, 0.9])
        assert no_colour_reason(session, scoring_version=1, generation_id=ids[0]) is None
        assert no_colour_reason(session, scoring_version=1) is None
        assert "no stored scores from probe v1" in no_colour_reason(session, scoring_version=1, generation_id=ids[1])
        run = create_run(session, "rescore", {"version": 1}, None)
        mark_started(session, run.id, os.getpid())
        assert f"re-score run {run.id}" in no_colour_reason(session, scoring_version=1, generation_id=ids[1])
