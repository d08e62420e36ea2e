"""Annotate's actions on a real SQLite file: queue, save (or conflict), skip, comments, guidelines."""

from __future__ import annotations

import pytest

from core.base.errors import UserError
from core.base.types import Span
from core.orchestration.actions import annotate as acts
from tests.support.actions import events, team_on, user_id


@pytest.fixture()
def team(tmp_path):
    found = team_on(tmp_path)
    yield found
    found.storage.dispose()


def _queue(team, who: str, **filters):
    options = {"dataset": None, "split": None, "label_state": None, "sort": "newest", "probe_version": None}
    return acts.open_queue(team.storage, team.actors[who], search=None, **{**options, **filters})


def test_the_queue_lists_the_answers_with_why_and_a_bad_search_is_one_message(team):
    shown = _queue(team, "ann")
    assert sorted(i.generation_id for i in shown.items) == sorted(team.ids)
    assert set(shown.reasons) == set(team.ids) and all(shown.reasons.values())
    assert shown.summary and shown.error is None
    too_long = acts.open_queue(
        team.storage,
        team.actors["ann"],
        dataset=None,
        split=None,
        label_state=None,
        sort="newest",
        probe_version=None,
        search="x" * (acts.MAX_SEARCH_CHARS + 1),
    )
    assert too_long.items == [] and str(acts.MAX_SEARCH_CHARS) in too_long.error


def test_save_then_a_stale_save_is_a_conflict_that_overwrites_nothing(team):
    first = team.ids[0]
    saved = acts.save_annotation(team.storage, team.actors["ann"], first, [Span(0, 4, "Supported")], 0)
    assert saved == acts.Saved(1)
    opened = acts.open_answer(team.storage, team.actors["ann"], first, None)
    assert opened.version == 1 and opened.my_spans == [Span(0, 4, "Supported")]
    assert opened.generation.completion.startswith("Lviv") and opened.trace is not None
    stale = acts.save_annotation(team.storage, team.actors["ann"], first, [Span(5, 8, "Not Supported")], 0)
    assert isinstance(stale, acts.Conflict)
    assert stale.their_version == 1 and stale.their_spans == [Span(0, 4, "Supported")] and stale.saved_by == "ann"
    assert acts.open_answer(team.storage, team.actors["ann"], first, None).my_spans == [Span(0, 4, "Supported")]
    assert acts.open_answer(team.storage, team.actors["bea"], first, None).version == 0, "sets are per person"
    saves = events(team.storage, "annotation.save")
    assert [e.user_id for e in saves] == [user_id(team.storage, "ann")]


def test_skip_and_put_back_are_stored_and_name_the_actor(team):
    answer = team.ids[1]
    acts.skip(team.storage, team.actors["bea"], answer)
    assert acts.skipped_at(team.storage, team.actors["bea"], answer) is not None
    assert answer not in [i.generation_id for i in _queue(team, "bea").items]
    acts.unskip(team.storage, team.actors["bea"], answer)
    assert acts.skipped_at(team.storage, team.actors["bea"], answer) is None
    logged = [e for e in events(team.storage) if e.entity == "skip"]
    assert len(logged) == 2 and {e.user_id for e in logged} == {user_id(team.storage, "bea")}


def test_comments_and_flags(team):
    answer = team.ids[0]
    with pytest.raises(UserError, match="write a comment"):
        acts.add_comment(team.storage, team.actors["ann"], answer, "  ", flag=False)
    acts.add_comment(team.storage, team.actors["ann"], answer, "is 1256 right?", flag=True)
    assert [c.body for c in acts.comments_for(team.storage, answer)] == ["is 1256 right?"]
    assert [c.generation_id for c in acts.open_flags(team.storage, "set1")] == [answer]
    with pytest.raises(UserError):
        acts.resolve_flags(team.storage, team.actors["bea"], answer)  # not hers, not a reviewer
    assert acts.resolve_flags(team.storage, team.actors["rita"], answer) == 1
    assert acts.open_flags(team.storage, "set1") == []
    assert events(team.storage, "comment.add")[0].user_id == user_id(team.storage, "ann")


def test_guidelines_are_written_by_admins_only(team):
    assert acts.current_guidelines(team.storage) is None
    with pytest.raises(UserError, match="only an admin"):
        acts.save_guidelines(team.storage, team.actors["ann"], "rules", 0)
    assert acts.save_guidelines(team.storage, team.actors["boss"], "# Rules", 0) == 1
    with pytest.raises(UserError):
        acts.save_guidelines(team.storage, team.actors["root"], "other rules", 0)  # boss saved since
    found = acts.current_guidelines(team.storage)
    assert (found.version, found.body, found.author) == (1, "# Rules", "boss")


def test_an_answer_without_scores_says_what_an_admin_can_do_and_an_admin_starts_the_rescore(
    team, tmp_path, monkeypatch
):
    """#25 friction 3: no command line on a page; an admin gets a Re-score (annotators are refused)."""
    from sqlalchemy import func, select

    from core.probes.config import ProbeConfig
    from db.models import TrainRun
    from db.probes import register_probe
    from db.train_runs import get_run

    monkeypatch.setenv("PROBELENS_MODEL", str(tmp_path / "no-model"))  # the worker started here stops at once
    monkeypatch.setenv("PROBELENS_CACHE_DIR", str(tmp_path / "cache"))
    with team.storage.sessions() as session, session.begin():
        config = ProbeConfig(model_id="tiny-test-model", tokenizer_hash=None, layer=1, hidden_size=4)
        register_probe(session, artifact_dir="/nowhere", config=config, version=1)
    opened = acts.open_answer(team.storage, team.actors["ann"], team.ids[0], 1)
    assert opened.no_colours and "python -m" not in opened.no_colours and "An admin can re-score" in opened.no_colours
    assert opened.rescore_version == 1
    with pytest.raises(UserError):
        acts.start_rescore(team.storage, team.actors["ann"], 1)
    with team.storage.sessions() as session:
        assert session.scalar(select(func.count(TrainRun.id))) == 0
    with pytest.raises(UserError, match="no probe v7"):
        acts.start_rescore(team.storage, team.actors["boss"], 7)
    run_id = acts.start_rescore(team.storage, team.actors["boss"], 1)
    with team.storage.sessions() as session:
        run = get_run(session, run_id)
        assert run.kind == "rescore" and run.params["version"] == 1 and run.created_by == user_id(team.storage, "boss")


def test_demo_answers_are_in_the_queue_to_practise_on_with_their_gold_pre_filled(team):
    """#25 friction 1 (and 11: gold shown where it exists): a demo answer with gold and no
    annotator is in everyone's queue, opening with its gold as editable pre-annotations; gold of
    another dataset is shown beside the editor, never pre-filled, and keeps it out of the queue."""
    from core.base.types import Generation
    from db.annotations import save_annotation_set
    from db.generations import add_generation, get_or_create_dataset
    from tests.support.actions import word_trace

    text = "The capital of Afghanistan is Kabul."
    gold = [Span(30, 35, "Supported")]
    with team.storage.sessions() as session, session.begin():
        demo = get_or_create_dataset(session, "demo")
        row = add_generation(
            session,
            demo,
            Generation([{"role": "user", "content": "Q?"}, {"role": "assistant", "content": text}]),
            trace=word_trace(text),
        )
        save_annotation_set(session, row.id, gold, owner=None, expected_version=0, actor=None)
        save_annotation_set(session, team.ids[1], gold, owner=None, expected_version=0, actor=None)
        demo_id = row.id
    shown = _queue(team, "ann")
    assert demo_id in [i.generation_id for i in shown.items]
    assert team.ids[1] not in [i.generation_id for i in shown.items]  # gold of another dataset: not a practice
    assert "practise" in shown.reasons[demo_id] and "1 demo answer to practise on" in shown.summary
    opened = acts.open_answer(team.storage, team.actors["ann"], demo_id, None)
    assert opened.prefilled and opened.my_spans == gold and opened.version == 0 and opened.gold_version == 1
    other = acts.open_answer(team.storage, team.actors["ann"], team.ids[1], None)
    assert not other.prefilled and other.my_spans == [] and other.gold_spans == gold
    saved = acts.save_annotation(team.storage, team.actors["ann"], demo_id, [Span(30, 35, "Not Supported")], 0)
    assert isinstance(saved, acts.Saved)
    assert demo_id not in [i.generation_id for i in _queue(team, "ann").items]  # labelled by me: it leaves
    # for the others it is now an answer that needs a second annotator, as any other
    assert demo_id in [i.generation_id for i in _queue(team, "bea", label_state="second").items]
