"""Which labels a retrain learns from (#24): an LLM judge's set is never a person's, and counts
only when the `judge` source is chosen, after gold and the people's majority."""

from __future__ import annotations

import pytest

from core.base.errors import UserError
from core.base.types import Span
from core.orchestration.retrain import RetrainParams
from db.annotations import save_annotation_set
from db.judges import add_judge
from db.labels import labelled_generations
from db.models import User
from db.users import add_user


def _save(session, generation_id: int, owner: User | None, spans: list[Span]) -> None:
    save_annotation_set(session, generation_id, spans, owner=owner, expected_version=0, actor=owner)


def test_judge_sets_count_only_when_chosen_and_never_join_the_peoples_majority(sqlite_db, make_generation):
    text = "Lviv is in Ukraine."
    lviv, ukraine = Span(0, 4, "Supported"), Span(11, 18, "Not Supported")
    with sqlite_db.sessions() as session, session.begin():
        judged_only, both, gold = (make_generation(session, text).id for _ in range(3))
        judge = add_judge(session, "j", base_url="http://127.0.0.1:1/v1", model="m")
        bot = session.get(User, judge.bot_user_id)
        ann = add_user(session, "ann", "password123")
        _save(session, judged_only, bot, [ukraine])
        _save(session, both, bot, [lviv, ukraine])
        _save(session, both, ann, [lviv])
        _save(session, gold, bot, [ukraine])
        _save(session, gold, None, [lviv])

    def truth(sources):
        with sqlite_db.reading() as session:
            found = labelled_generations(session, sources=sources)
        return {x.row_id: (x.source, [(s.start, s.label) for s in x.generation.spans]) for x in found}

    people = {both: ("majority", [(0, "Supported")]), gold: ("gold", [(0, "Supported")])}
    assert truth(("gold", "majority")) == people  # by default the judge's answer is left out
    assert truth(("gold", "majority", "judge")) == {**people, judged_only: ("judge", [(11, "Not Supported")])}
    assert truth(("judge",)) == {
        judged_only: ("judge", [(11, "Not Supported")]),
        both: ("judge", [(0, "Supported"), (11, "Not Supported")]),
        gold: ("judge", [(11, "Not Supported")]),
    }


def test_retrain_accepts_the_judge_source_and_refuses_others():
    RetrainParams(sources=["gold", "judge"]).validate()
    assert RetrainParams().sources == ["gold", "majority"]
    with pytest.raises(UserError, match="'gold', 'majority' and 'judge'"):
        RetrainParams(sources=["robots"]).validate()
