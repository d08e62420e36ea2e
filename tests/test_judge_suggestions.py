"""Annotate shows an LLM judge's spans as suggestions (#24): its label and note kept, the cited
passage's text in the note (shown as text in the tooltip), accepted like probe suggestions; and
the evidence view beside the editor, each suggestion with its cited passages as plain text."""

from __future__ import annotations

import json
import re

from core.base.types import Span
from core.components.heatmap_data import edit_payload
from core.text.editing import Suggestion, accept_suggestions
from core.text.markdown import md_escape
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


HOSTILE = "![x](http://127.0.0.1:9/t.png) [click](http://evil.example) <img src=x onerror=alert(1)> **bold**"
PASSAGE = "Lviv was founded in 1256 by King Daniel of Galicia. " + HOSTILE
REFERENCE = json.dumps({"title": "Atlas <b>" + HOSTILE, "text": PASSAGE, "url": "https://atlas.example/lviv?a=<b>"})


def _judged(session, generation_id: int, evidence: dict[int, list[int]], note: str = "<i>1256?</i> " + HOSTILE):
    """A judge 'gpt' with two spans on ANSWERS[0]: Lviv (no evidence) and 1256 (citing `evidence`)."""
    judge = add_judge(session, "gpt", base_url="http://127.0.0.1:1/v1", model="m")
    store_result(
        session,
        judge,
        generation_id,
        instructions_version=0,
        evidence_hash="h",
        status=JudgeStatus.OK,
        reason=None,
        input_tokens=1,
        output_tokens=1,
        cost=None,
        spans=[Span(0, 4, "Supported", None), Span(20, 24, "Not Supported", note)],
        evidence=evidence,
    )


def test_the_evidence_view_gives_each_suggestion_its_cited_passages_whole(tmp_path):
    from core.orchestration.actions.annotate import CitedPassage, open_answer

    team = team_on(tmp_path)
    with team.storage.sessions() as session, session.begin():
        import_documents(session, parse_reference_text(REFERENCE, "atlas.jsonl"), collection="atlas", actor=None)
        (passage,) = search_passages(session, "Lviv founded", 1)
        _judged(session, team.ids[0], {20: [passage.id, 999_999]})
    opened = open_answer(team.storage, team.actors["ann"], team.ids[0], None)
    lviv, year = opened.judge_evidence
    assert (lviv.judge, lviv.text, lviv.label, lviv.note, lviv.passages, lviv.missing) == (
        "gpt",
        "Lviv",
        "Supported",
        None,
        [],
        0,
    )
    assert (year.text, year.label, year.start, year.end) == ("1256", "Not Supported", 20, 24)
    assert year.note == "<i>1256?</i> " + HOSTILE  # data, unescaped: the page shows it as text
    assert year.passages == [
        CitedPassage(passage.id, "Atlas <b>" + HOSTILE, "https://atlas.example/lviv?a=<b>", "atlas", PASSAGE)
    ]
    assert year.missing == 1  # a cited id that is not (or no longer) a passage
    assert len(opened.judge_suggestions) == 2  # the editor gets the same spans


def test_annotate_shows_the_evidence_as_text_never_as_markdown_or_html(app_database):
    """AppTest: the hostile note, title, address and passage reach the page as st.text or
    escaped markdown; no markdown element carries them raw."""
    from core.base.types import Generation
    from db.generations import add_generation, get_or_create_dataset
    from db.users import add_user
    from tests.support.actions import word_trace
    from tests.support.apptest import plain, sign_in

    with app_database.sessions() as session, session.begin():
        add_user(session, "ann", "ann-password")
        add_user(session, "boss", "boss-password", role="admin")  # an admin exists: no first-run form
        dataset = get_or_create_dataset(session, "set1")
        gen = Generation([{"role": "user", "content": "Q?"}, {"role": "assistant", "content": ANSWERS[0]}])
        generation_id = add_generation(session, dataset, gen, trace=word_trace(ANSWERS[0])).id
        import_documents(session, parse_reference_text(REFERENCE, "atlas.jsonl"), collection="atlas", actor=None)
        (passage,) = search_passages(session, "Lviv founded", 1)
        _judged(session, generation_id, {20: [passage.id]})
    at = sign_in("ann", "ann-password")
    at.query_params["generation"] = str(generation_id)
    at.switch_page("pages/annotate.py")
    at.run()
    assert not at.exception, at.exception
    (panel,) = [e for e in at.expander if e.label.startswith("The LLM judge's evidence")]
    assert panel.label == "The LLM judge's evidence: 2 suggestions, 1 citing passages"
    texts = [t.value for t in panel.text]
    assert texts == ["Note: <i>1256?</i> " + HOSTILE, "https://atlas.example/lviv?a=<b>", PASSAGE]
    title = "Atlas <b>" + HOSTILE
    assert [m.value for m in panel.markdown] == [
        "**Lviv** · supported · judge gpt · characters 0–4",
        "**1256** · hallucinated · judge gpt · characters 20–24",
        f"*{md_escape(title)}* · passage {passage.id} · collection atlas",
    ]
    escaped = panel.markdown[2].value
    assert not re.search(r"(?<!\\)[<\[\]!(]", escaped)  # no tag, link or image left unescaped
    # what the person reads: the title, literally (a zero-width space keeps "http" from autolinking)
    assert plain(escaped).replace("\u200b", "").startswith(f"*{title}*")
    assert [c.value for c in panel.caption] == ["No passage cited: the judge went by its own knowledge."]
