"""db/generations.py: content identity, datasets, models, generations, counts, deletion."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sqlalchemy import func, select

from core.base.errors import UserError
from core.base.types import Generation as CoreGeneration
from core.base.types import Span, TokenTrace
from db.annotations import save_annotation_set
from db.engine import transaction
from db.events import list_events
from db.generations import (
    add_generation,
    content_hash,
    delete_dataset,
    get_generation,
    get_or_create_dataset,
    get_or_create_model,
    list_datasets,
    to_core,
    trace_of,
)
from db.models import AnnotationSet, Dataset, Generation, ModelRecord, SpanRow, User

ANSWER = "Lviv (Lemberg) was founded in 1256 by King Daniel."


def _gen(answer: str = ANSWER, prompt: str = "Tell me about Lviv.", **kwargs) -> CoreGeneration:
    return CoreGeneration([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}], **kwargs)


def _user(session, name: str) -> User:
    user = User(name=name, password_hash="not-a-real-hash", role="annotator", active=True, failed_logins=0)
    session.add(user)
    session.flush()
    return user


def _count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


# --- identity -------------------------------------------------------------------------------


def test_content_hash_is_nfc_and_key_order_insensitive():
    composed = [{"role": "user", "content": "Café?"}, {"role": "assistant", "content": "Zürich"}]
    decomposed = [{"content": "Cafe\u0301?", "role": "user"}, {"role": "assistant", "content": "Zu\u0308rich", "x": 1}]
    assert content_hash(composed) == content_hash(decomposed)
    assert len(content_hash(composed)) == 64
    other_role = [{"role": "system", "content": "Café?"}, {"role": "assistant", "content": "Zürich"}]
    assert content_hash(other_role) != content_hash(composed)
    assert content_hash(composed[1:]) != content_hash(composed)


# --- datasets and models --------------------------------------------------------------------


def test_get_or_create_dataset(any_db):
    with transaction(any_db.sessions) as session:
        first = get_or_create_dataset(session, "  wiki  ")
        assert first.name == "wiki" and first.id is not None
        assert get_or_create_dataset(session, "wiki") is first
        get_or_create_dataset(session, "x" * 200)
    for bad in ("", "   ", "x" * 201, None, 3):
        with transaction(any_db.sessions) as session, pytest.raises(UserError, match="dataset name must be 1 to 200"):
            get_or_create_dataset(session, bad)
    with any_db.sessions() as session:
        assert _count(session, Dataset) == 2


def test_get_or_create_model_fills_unknown_metadata_only(any_db):
    with transaction(any_db.sessions) as session:
        model = get_or_create_model(session, " HuggingFaceTB/SmolLM2-135M ", hidden_size=576)
        again = get_or_create_model(session, "HuggingFaceTB/SmolLM2-135M", hidden_size=999, num_layers=30)
        assert again is model
        assert (model.name, model.hidden_size, model.num_layers) == ("HuggingFaceTB/SmolLM2-135M", 576, 30)
        with pytest.raises(UserError, match="model name"):
            get_or_create_model(session, "  ")
    with any_db.sessions() as session:
        assert _count(session, ModelRecord) == 1


# --- generations ----------------------------------------------------------------------------


def _trace(text: str) -> TokenTrace:
    cuts = [0, 4, 14, len(text)]
    offsets = list(zip(cuts, cuts[1:]))
    return TokenTrace(
        [5, 17, 300],
        [text[s:e] for s, e in offsets],
        offsets,
        [-0.1, float("nan"), -2.5],
        [0.3, 1.25, 2.0],
        scores=[0.1, 0.2, 0.3],
    )


def test_add_generation_stores_everything_but_spans(any_db):
    with transaction(any_db.sessions) as session:
        dataset = get_or_create_dataset(session, "wiki")
        user = _user(session, "alice")
        gen = _gen(
            id="ext-1",
            model="tiny-llama",
            spans=[Span(6, 13, "Not Supported")],
            extra={"topic": "cities", "tokens": {"ignored": True}, "nested": {"a": [1, 2]}},
        )
        row = add_generation(
            session, dataset, gen, split="test", source="generated", trace=_trace(ANSWER), created_by=user
        )
        assert row is not None and row.id is not None
        generation_id = row.id
    with any_db.sessions() as session:
        row = get_generation(session, generation_id)
        assert (row.split, row.source, row.external_id, row.completion) == ("test", "generated", "ext-1", ANSWER)
        assert row.created_by is not None and row.model.name == "tiny-llama"
        core = to_core(row)
        assert core.conversation == gen.conversation and core.spans == []
        assert (core.id, core.model) == ("ext-1", "tiny-llama")
        assert core.extra == {"topic": "cities", "nested": {"a": [1, 2]}}
        trace = trace_of(row)
        assert trace.token_ids == [5, 17, 300] and trace.offsets == [(0, 4), (4, 14), (14, len(ANSWER))]
        assert trace.texts == ["Lviv", " (Lemberg)", ANSWER[14:]]
        assert trace.logprobs[0] == pytest.approx(-0.1) and math.isnan(trace.logprobs[1])
        assert trace.entropies == [float(np.float32(x)) for x in (0.3, 1.25, 2.0)]
        assert trace.scores is None  # scores belong to a probe version, not to the generation
        assert _count(session, AnnotationSet) == 0


def test_add_generation_skips_duplicates_in_the_same_dataset_only(any_db):
    with transaction(any_db.sessions) as session:
        wiki = get_or_create_dataset(session, "wiki")
        other = get_or_create_dataset(session, "other")
        assert add_generation(session, wiki, _gen("Café")) is not None
        assert add_generation(session, wiki, _gen("Cafe\u0301")) is None  # same text once NFC-normalised
        assert add_generation(session, other, _gen("Café")) is not None
        row = add_generation(session, wiki, _gen("Cafe\u0301!"))
        assert row.completion == "Café!"  # stored NFC
        assert trace_of(row) is None
    with any_db.sessions() as session:
        assert _count(session, Generation) == 3


@pytest.mark.parametrize(
    ("gen", "kwargs", "message"),
    [
        (_gen("a\x00b"), {}, "NUL"),
        (_gen(id="x" * 201), {}, '"id" is longer than 200'),
        (_gen(extra={"bad": "\ud800"}), {}, "unpaired surrogate"),
        (_gen(extra={"score": float("nan")}), {}, "NaN"),
        (_gen(), {"split": ""}, '"split" must be a non-empty string'),
        (_gen(), {"split": "s" * 51}, '"split" is longer than 50'),
        (_gen("short"), {"trace": TokenTrace([1], ["short!"], [(0, 6)], [0.0], [0.0])}, "outside the completion"),
        (_gen("short"), {"trace": TokenTrace([2**31], ["short"], [(0, 5)], [0.0], [0.0])}, "token id"),
    ],
)
def test_add_generation_refuses_what_cannot_be_stored(sqlite_db, gen, kwargs, message):
    with sqlite_db.sessions() as session, session.begin():
        dataset = get_or_create_dataset(session, "wiki")
        with pytest.raises(UserError, match=message):
            add_generation(session, dataset, gen, **kwargs)
        assert _count(session, Generation) == 0


def test_get_generation_unknown(sqlite_db):
    with sqlite_db.sessions() as session, pytest.raises(UserError, match="unknown generation 12345"):
        get_generation(session, 12345)


# --- overview and deletion --------------------------------------------------------------------


def _fill(session) -> dict[str, list[int]]:
    """wiki: 4 answers; gold on 2 (3 hallucinated spans); annotator sets on 2 (one empty)."""
    alice, bob = _user(session, "alice"), _user(session, "bob")
    wiki = get_or_create_dataset(session, "wiki")
    ids = [add_generation(session, wiki, _gen(f"{ANSWER} #{i}")).id for i in range(4)]
    gold = dict(owner=None, expected_version=0, actor=alice)
    save_annotation_set(session, ids[0], [Span(6, 13, "Not Supported"), Span(0, 4, "Supported")], **gold)
    save_annotation_set(
        session,
        ids[1],
        [Span(30, 34, "Insufficient Information"), Span(43, 49, "hallucinated"), Span(0, 4, "N/A")],
        **gold,
    )
    save_annotation_set(session, ids[1], [Span(0, 4, "Supported")], owner=alice, expected_version=0, actor=alice)
    save_annotation_set(session, ids[2], [], owner=bob, expected_version=0, actor=bob)
    save_annotation_set(session, ids[1], [Span(0, 4, "Supported")], owner=bob, expected_version=0, actor=bob)
    empty = get_or_create_dataset(session, "empty")
    other = get_or_create_dataset(session, "other")
    kept = add_generation(session, other, _gen("Paris is in France.")).id
    save_annotation_set(session, kept, [Span(0, 5, "Supported")], owner=None, expected_version=0, actor=None)
    assert empty.id is not None
    return {"wiki": ids, "other": [kept]}


def test_list_datasets_counts(any_db):
    with transaction(any_db.sessions) as session:
        _fill(session)
    with any_db.sessions() as session:
        listed = {d["name"]: d for d in list_datasets(session)}
    assert [name for name in listed] == ["empty", "other", "wiki"]
    counts = {
        name: (d["answers"], d["labelled_by_anyone"], d["gold"], d["hallucinated_spans"]) for name, d in listed.items()
    }
    assert counts == {"wiki": (4, 2, 2, 3), "empty": (0, 0, 0, 0), "other": (1, 0, 1, 0)}


def test_delete_dataset_cascades_and_logs_one_event(any_db):
    with transaction(any_db.sessions) as session:
        ids = _fill(session)
        admin = _user(session, "admin")
    with transaction(any_db.sessions) as session:
        admin = session.scalar(select(User).where(User.name == "admin"))
        get_generation(session, ids["wiki"][0])  # loaded in this session: must not linger afterwards
        event = delete_dataset(session, " wiki ", admin)
        assert event.before == {"name": "wiki", "generations": 4, "annotation_sets": 5, "spans": 7}
        # The same session can create the dataset again at once (SQLite may reuse ids).
        again = get_or_create_dataset(session, "wiki")
        assert add_generation(session, again, _gen(f"{ANSWER} #0")) is not None
    with any_db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Generation)) == 2
        assert _count(session, AnnotationSet) == 1 and _count(session, SpanRow) == 1
        events = list_events(session, action="dataset.delete")
        assert len(events) == 1 and events[0].dataset == "wiki" and events[0].user_id == admin.id
        with pytest.raises(UserError, match="unknown dataset 'nope'"):
            delete_dataset(session, "nope", None)
