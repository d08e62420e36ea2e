"""Review, Users, Data and run actions on a real SQLite file (no browser, no model)."""

from __future__ import annotations

import json

import pytest

from core.base.errors import UserError
from core.base.types import Span
from core.orchestration.actions import annotate, data, review, runs, shared, users
from tests.support.actions import events, team_on, user_id


@pytest.fixture()
def team(tmp_path):
    found = team_on(tmp_path)
    yield found
    found.storage.dispose()


def _labelled(team) -> int:
    answer = team.ids[0]
    annotate.save_annotation(team.storage, team.actors["ann"], answer, [Span(0, 4, "Supported")], 0)
    annotate.save_annotation(team.storage, team.actors["bea"], answer, [Span(0, 4, "Not Supported")], 0)
    return answer


def test_gold_is_merged_or_taken_whole_by_a_reviewer_and_a_stale_save_refused(team):
    answer = _labelled(team)
    assert answer in [i.generation_id for i in review.review_queue(team.storage, team.actors["rita"], "set1", None)]
    bundle = review.review_bundle(team.storage, answer, None)
    assert set(bundle.annotators) == {"ann", "bea"} and bundle.gold is None
    assert review.save_merged_gold(team.storage, team.actors["rita"], answer, [Span(0, 4, "Supported")], 0) == 1
    with pytest.raises(UserError):
        review.save_merged_gold(team.storage, team.actors["boss"], answer, [], 0)  # rita saved since
    with pytest.raises(review.GoldRemovalError):  # bea's set drops rita's span: asked first
        review.take_annotator_set(team.storage, team.actors["boss"], answer, "bea", 1)
    review.take_annotator_set(team.storage, team.actors["boss"], answer, "bea", 1, allow_removal=True)
    assert review.review_bundle(team.storage, answer, None).gold[1] == [Span(0, 4, "Not Supported")]
    gold = events(team.storage, "review.gold")
    assert [e.user_id for e in gold] == [user_id(team.storage, "rita"), user_id(team.storage, "boss")]
    with pytest.raises(UserError, match="no longer allows"):
        review.save_merged_gold(team.storage, team.actors["ann"], answer, [], 2)  # an annotator never settles


def test_assigning_work_and_the_agreement_data(team):
    _labelled(team)
    made = review.assign_work(team.storage, team.actors["rita"], "set1", 1, ["ann", "bea"], 24.0)
    assert made > 0
    items, annotators, generation_ids = review.agreement_data(team.storage, "set1")
    assert sorted(annotators) == ["ann", "bea"] and generation_ids == [team.ids[0]] and len(items) == 1
    assert "ann" in review.active_user_names(team.storage)


def test_an_admin_manages_accounts_and_reads_the_log_naming_who_did_it(team):
    boss = team.actors["boss"]
    users.add_user(team.storage, boss, "cid", "cid-password", "annotator")
    users.set_role(team.storage, boss, "cid", "reviewer")
    users.deactivate(team.storage, boss, "cid")
    users.reactivate(team.storage, boss, "cid")
    users.reset_password(team.storage, boss, "cid", "another-password")
    rows = {row["name"]: row for row in users.accounts_table(team.storage, boss)}
    assert rows["cid"]["role"] == "reviewer" and rows["cid"]["active"]
    logged = users.event_log(team.storage, boss, user_id=user_id(team.storage, "boss"))
    assert len(logged) >= 5 and {e["user"] for e in logged} == {"boss"}
    assert users.team_table(team.storage, boss, None)
    with pytest.raises(UserError, match="no longer allows"):
        users.add_user(team.storage, team.actors["rita"], "eve", "eve-password", "admin")


def test_the_event_log_filters_by_action_prefix_and_says_who_was_added(team):
    boss = team.actors["boss"]
    users.add_user(team.storage, boss, "dora", "dora-password", "annotator")
    users.deactivate(team.storage, boss, "dora")
    under_user = users.event_log(team.storage, boss, action="user")
    assert {e["action"] for e in under_user} >= {"user.add", "user.deactivate"}
    assert all(e["action"].startswith("user.") for e in under_user)
    assert users.event_log(team.storage, boss, action="use") == []  # a prefix of whole words, not of letters
    added = next(e for e in under_user if e["action"] == "user.add" and e["after"]["name"] == "dora")
    assert added["what"] == "added dora as annotator"
    gone = next(e for e in under_user if e["action"] == "user.deactivate")
    assert gone["what"] == "deactivate user dora"


def test_before_and_after_read_whole_one_field_a_line():
    from core.text.readable import readable_lines

    long_note = "a note " * 40
    assert readable_lines({"spans": [[0, 5, "Supported"]], "note": long_note}) == (
        f"spans: 0, 5, Supported\nnote: {long_note}"
    )
    assert readable_lines(None) == "—"


def test_import_export_and_delete_a_dataset(team):
    boss = team.actors["boss"]
    record = {
        "conversation": [
            {"role": "user", "content": "Where?"},
            {"role": "assistant", "content": "Lviv is in Ukraine."},
        ],
        "annotations": [{"span": "Ukraine", "label": "Supported"}],
    }
    content = (json.dumps(record) + "\n").encode()
    preview = data.preview(content, "one.jsonl", "train")
    assert preview.records == 1 and not preview.problems
    with pytest.raises(data.BadImportError):
        data.import_data(team.storage, boss, b"not json\n", "bad.jsonl", dataset="bad", split="train", as_user=None)
    assert "bad" not in shared.dataset_names(team.storage)
    report = data.import_data(team.storage, boss, content, "one.jsonl", dataset="one", split="train", as_user=None)
    assert report.imported == 1
    exported, file_name, _mime, count = data.export(
        team.storage, boss, "one", format="jsonl", which="gold", annotator=None
    )
    assert count == 1 and file_name.endswith(".jsonl") and b"Ukraine" in exported
    data.delete_dataset(team.storage, boss, "one")
    assert "one" not in shared.dataset_names(team.storage)
    assert events(team.storage, "dataset.delete")[0].user_id == user_id(team.storage, "boss")


def test_a_run_is_cancelled_by_its_pages_role_and_the_event_names_who(team):
    from db.train_runs import create_run

    with team.storage.sessions() as session, session.begin():
        run_id = create_run(session, "retrain", {}, None).id
    assert runs.latest_runs(team.storage, ("retrain", "rescore"))["retrain"]["id"] == run_id
    with pytest.raises(UserError, match="no longer allows"):
        runs.cancel_run(team.storage, team.actors["rita"], run_id)  # a reviewer cannot open Probes
    runs.cancel_run(team.storage, team.actors["root"], run_id)
    assert runs.latest_runs(team.storage, ("retrain",))["retrain"]["cancel_requested"]
    assert [e.user_id for e in events(team.storage, "retrain.cancel")] == [user_id(team.storage, "root")]


def test_links_name_stored_answers_only(team):
    assert shared.linked_answer(team.storage, str(team.ids[0])) == team.ids[0]
    for typed in (None, "", "abc", "-1", "9" * 13, "99999"):
        assert shared.linked_answer(team.storage, typed) is None
    assert shared.answer_dataset(team.storage, team.ids[1]) == "set1"
