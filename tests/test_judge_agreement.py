"""Review → Agreement's judge table (#24): an LLM judge against each person and gold, per label,
on the answers both labelled; plus the action that finds the judges among the annotators."""

from __future__ import annotations

import pytest

from core.analysis.agreement import judge_agreement
from core.base.types import Span
from db.annotations import save_annotation_set
from db.judges import add_judge
from db.models import User
from db.users import add_user

TEXT = "Lviv is in Ukraine and Kyiv is too."
WORDS = [(0, 4), (5, 7), (8, 10), (11, 18), (19, 22), (23, 27), (28, 30), (31, 35)]
LVIV, UKRAINE, KYIV = (0, 4), (11, 18), (23, 27)


def _spans(*marks: tuple[tuple[int, int], str]) -> list[Span]:
    return [Span(a, b, label) for (a, b), label in marks]


def test_the_judge_is_measured_against_each_rater_per_label():
    judge = _spans((LVIV, "Supported"), (UKRAINE, "Not Supported"), (KYIV, "Supported"))
    ann = _spans((LVIV, "Supported"), (UKRAINE, "Supported"), (KYIV, "Supported"))
    gold = list(judge)
    items = [(WORDS, {"judge-x": judge, "ann": ann, "gold": gold}), (WORDS, {"ann": ann, "judge-x": None})]
    rows = {(r["against"], r["label"]): r for r in judge_agreement(items, "judge-x", ["ann", "gold", "bob"])}
    assert {key[0] for key in rows} == {"ann", "gold"}  # bob shares no answer with the judge
    assert rows[("gold", "all labels")]["cohen_kappa"] == 1.0
    assert rows[("gold", "Not Supported")]["span_f1_exact"] == 1.0
    assert rows[("ann", "all labels")]["n_items"] == 1
    assert rows[("ann", "Not Supported")]["span_f1_exact"] == 0.0  # the judge alone calls Ukraine hallucinated
    assert rows[("ann", "Supported")]["span_f1_exact"] == 0.8  # 2 of 3 against 2 of 2
    assert rows[("ann", "Insufficient Information")]["span_f1_exact"] is None  # nobody used it


def test_the_review_action_finds_the_judges_among_the_annotators(sqlite_db, make_generation):
    from core.orchestration.actions.review import judge_agreement_rows

    with sqlite_db.sessions() as session, session.begin():
        generation = make_generation(session, TEXT, dataset="facts").id
        bot = session.get(User, add_judge(session, "x", base_url="http://127.0.0.1:1/v1", model="m").bot_user_id)
        ann = add_user(session, "ann", "password123")
        for owner, label in ((bot, "Not Supported"), (ann, "Supported")):
            spans = _spans((UKRAINE, label))
            save_annotation_set(session, generation, spans, owner=owner, expected_version=0, actor=owner)
    rows = judge_agreement_rows(sqlite_db, "facts")
    assert {(r["judge"], r["against"]) for r in rows} == {("judge-x", "ann")}
    assert len(rows) == 4  # all labels + the three paper labels


def test_work_is_not_assigned_to_a_judges_account(sqlite_db, make_generation):
    from core.orchestration.actions.review import active_user_names

    with sqlite_db.sessions() as session, session.begin():
        make_generation(session, TEXT, dataset="facts")
        add_judge(session, "x", base_url="http://127.0.0.1:1/v1", model="m")
        add_user(session, "ann", "password123")
    assert active_user_names(sqlite_db) == ["ann"]
    from core.base.errors import UserError
    from db.assignments import assign

    with sqlite_db.sessions() as session, session.begin():
        with pytest.raises(UserError, match="an LLM judge's account cannot be assigned work"):
            assign(session, "facts", 1, ["ann", "judge-x"], actor=None)
