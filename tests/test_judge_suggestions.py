"""Annotate shows an LLM judge's spans as suggestions (#24): its label and note kept, the cited
passage's text in the note (shown as text in the tooltip), accepted like probe suggestions."""

from __future__ import annotations

from core.base.types import Span
from core.components.heatmap_data import edit_payload
from core.text.editing import Suggestion, accept_suggestions
from core.text.references import parse_reference_text
from db.judges import add_judge, store_result
from db.models import JudgeStatus
from db.references import import_documents, search_passages
from tests.support.actions import ANSWERS, team_on


def test_open_answer_offers_the_judges_spans_with_notes_and_cited_passages(tmp_path):
    from core.components.heatmap_data import TokenView
    from core.orchestration.actions.annotate import open_answer
    from tests.support.actions import word_trace

    team = team_on(tmp_path)
    docs = parse_reference_text("# Lviv\n\nLviv was founded in 1256 by King Daniel of Galicia.", "lviv.md")
    with team.storage.sessions() as session, session.begin():
        import_documents(session, docs, collection="atlas", actor=None)
        (passage,) = search_passages(session, "Lviv founded", 1)
        judge = add_judge(session, "gpt", base_url="http://127.0.0.1:1/v1", model="m")
        spans = [Span(0, 4, "Supported", "a city"), Span(20, 24, "Not Supported", "<b>1256?</b>")]
        store_result(
            session,
            judge,
            team.ids[0],
            instructions_version=0,
            evidence_hash="h",
            status=JudgeStatus.OK,
            reason=None,
            input_tokens=1,
            output_tokens=1,
            cost=None,
            spans=spans,
            evidence={20: [passage.id]},
        )
    opened = open_answer(team.storage, team.actors["ann"], team.ids[0], None)
    assert [(ANSWERS[0][s["start"] : s["end"]], s["label"], s["source"]) for s in opened.judge_suggestions] == [
        ("Lviv", "Supported", "gpt"),
        ("1256", "Not Supported", "gpt"),
    ]
    note = opened.judge_suggestions[1]["note"]
    assert note.startswith("<b>1256?</b>\n[passage ") and "Lviv: # Lviv\nLviv was founded in 1256" in note
    assert opened.my_spans == []  # suggestions only: nothing is the person's until accepted
    payload = edit_payload(TokenView.from_trace(word_trace(ANSWERS[0])), suggestions=opened.judge_suggestions)
    assert payload["suggestions"][1]["label"] == "Not Supported" and payload["suggestions"][1]["note"] == note


def test_accepting_a_judge_suggestion_keeps_its_label_and_note():
    judge = [Suggestion(0, 4, 1.0, "Supported", "a city"), Suggestion(5, 8, 0.9)]
    assert accept_suggestions([], judge, 0.5) == [Span(0, 4, "Supported", "a city"), Span(5, 8, "Not Supported")]
