"""Generate page logic with AppTest (tiny model): a blank question is refused and stores nothing;
a scored pasted conversation can be saved to a dataset for annotation."""

from __future__ import annotations

import pytest

from tests.support.apptest import answer_count, plain, sign_in, with_tiny_model_and_probe


@pytest.fixture()
def env(app_database, monkeypatch, tmp_path, tiny_model_dir, tiny_lm, isolated_cache):
    """The tiny model as the server's model, with an active linear probe for it."""
    with_tiny_model_and_probe(app_database, monkeypatch, tmp_path, tiny_model_dir, tiny_lm)
    return app_database


def test_a_blank_question_gets_one_message_and_generates_nothing(env):
    at = sign_in("boss", "boss-password", "pages/generate.py")
    at.chat_input[0].set_value("  \n\t ").run()
    assert not at.exception, at.exception
    assert [plain(e.value) for e in at.error] == ["the question is empty: type a question to ask"]
    assert not at.chat_message  # no empty user bubble
    assert answer_count(env) == 0


def test_a_scored_pasted_conversation_is_saved_for_annotation(env):
    from db.generations import get_generation, trace_of
    from db.predictions import scores_for

    at = sign_in("boss", "boss-password", "pages/generate.py")
    at.radio(key="gen-mode").set_value("Score a pasted conversation").run()
    at.text_area[0].input("What is the capital of Australia?")
    at.text_area[1].input("The capital of Australia is Sydney.")
    next(b for b in at.get("form_submit_button") if b.label == "Score").click()
    at.run()
    assert not at.exception, at.exception
    assert answer_count(env) == 0  # scoring alone stores nothing
    next(b for b in at.button if b.label.startswith("Save to dataset")).click()
    at.run()
    assert not at.exception, at.exception
    with env.sessions() as session:
        row = get_generation(session, 1)
        assert row.completion == "The capital of Australia is Sydney." and row.source == "imported"
        assert row.dataset.name == "playground"
        assert len(scores_for(session, 1, row.id)) == len(trace_of(row).token_ids) > 0
    assert any(link.label == "Open answer #1 in Annotate" for link in at.get("page_link"))


def ask(at, question: str):
    """Ask on the page and rerun it until the live answer has ended and been stored."""
    import time

    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        live = at.session_state["live"]
        if not live.running and isinstance(live.snapshot().result, int):
            break
        time.sleep(0.2)
    at.run()
    assert not at.exception, at.exception
    return live.snapshot().result


def test_earlier_answers_stay_on_the_page_and_an_answer_can_be_discarded(env):
    from db.events import list_events
    from db.generations import find_generation

    at = sign_in("boss", "boss-password", "pages/generate.py")
    at.number_input(key="gen-max").set_value(6).run()
    first = ask(at, "Who founded Lviv?")
    second = ask(at, "Name a river in *Peru*.")
    assert [plain(e.label) for e in at.expander if "Lviv" in e.label] == [f"Who founded Lviv? · #{first}"]
    next(b for b in at.button if b.label == "Discard this answer").click().run()
    assert not at.exception, at.exception
    with env.sessions() as session:
        assert find_generation(session, second) is None and find_generation(session, first) is not None
        assert list_events(session, action="generation.discard")[0].generation_id == second
    assert any(f"Answer #{second} was discarded" in c.value for c in at.caption)
    ask(at, "And a third?")
    labels = [plain(e.label) for e in at.expander]
    assert any("Lviv" in x for x in labels) and any("Peru" in x and "discarded" in x for x in labels)
