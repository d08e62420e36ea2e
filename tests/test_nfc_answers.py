"""Answers a model writes in a form NFC changes: stored in NFC, their token ids still score.

A demo answer ended in U+2329 (NFC: U+3008); its stored ids decoded to the raw form, so every
retrain over the demo refused with "the stored token ids do not decode to the answer text"."""

from __future__ import annotations

import numpy as np
import pytest

from core.base.errors import UserError
from core.base.types import Generation, TokenTrace
from core.engine.scoring import score_conversation
from core.engine.stream import offsets_from_ids
from core.text.tokens import nfc, nfc_trace
from db.generations import add_generation, get_or_create_dataset, trace_of

RAW = "Left \u2329angle\u232a, cafe\u0301 and \u212bngstr\u00f6m \u0301x"  # NFC changes all four


def _trace(texts: list[str], offsets: list[tuple[int, int]]) -> TokenTrace:
    n = len(texts)
    return TokenTrace(list(range(n)), texts, offsets, [0.0] * n, [0.0] * n)


def test_nfc_trace_moves_offsets_to_the_nfc_text():
    # "e" and its combining accent in separate pieces; a held group ("" then the piece).
    texts = ["caf", "e", "\u0301", "", " \u2329x"]
    offsets = [(0, 3), (3, 4), (4, 5), (5, 8), (5, 8)]
    moved = nfc_trace(_trace(texts, offsets))
    text = nfc("".join(texts))
    assert text == "café \u3008x"
    assert "".join(moved.texts) == text
    assert moved.offsets[-1][1] == len(text)
    assert all(0 <= s <= e <= len(text) for s, e in moved.offsets)
    assert all(a[0] <= b[0] for a, b in zip(moved.offsets, moved.offsets[1:]))
    assert moved.texts[3] == "" and moved.offsets[3] == moved.offsets[4]


def test_an_nfc_trace_and_an_imported_one_are_left_alone():
    plain = _trace(["ab", "c"], [(0, 2), (2, 3)])
    assert nfc_trace(plain) is plain
    imported = _trace(["e\u0301"], [(0, 1)])  # offsets already on the NFC text
    assert nfc_trace(imported) is imported


def test_stored_ids_of_a_non_nfc_answer_score_like_its_nfc_text(tiny_lm):
    ids = tiny_lm.tokenizer(RAW, add_special_tokens=False)["input_ids"]
    assert offsets_from_ids(tiny_lm.tokenizer, ids)[2] == RAW  # the model's own form
    conversation = [{"role": "user", "content": "Say it"}, {"role": "assistant", "content": nfc(RAW)}]
    layer = tiny_lm.default_layer
    from_ids = score_conversation(tiny_lm, conversation, [layer], token_ids=ids)
    assert from_ids.trace.token_ids == ids
    assert "".join(from_ids.trace.texts) == nfc(RAW)
    assert all(0 <= s <= e <= len(nfc(RAW)) for s, e in from_ids.trace.offsets)
    # The same tokens fed as the raw text score the same (the ids are what the model saw).
    raw_conversation = [conversation[0], {"role": "assistant", "content": RAW}]
    as_raw = score_conversation(tiny_lm, raw_conversation, [layer], token_ids=ids)
    np.testing.assert_allclose(from_ids.trace.logprobs, as_raw.trace.logprobs, atol=1e-6)


def test_ids_of_another_text_are_still_refused(tiny_lm):
    ids = tiny_lm.tokenizer("something else", add_special_tokens=False)["input_ids"]
    conversation = [{"role": "user", "content": "Say it"}, {"role": "assistant", "content": nfc(RAW)}]
    with pytest.raises(UserError, match="do not decode"):
        score_conversation(tiny_lm, conversation, [tiny_lm.default_layer], token_ids=ids)


def test_a_stored_trace_is_counted_on_the_stored_nfc_text(tiny_lm, sqlite_db):
    ids = tiny_lm.tokenizer(RAW, add_special_tokens=False)["input_ids"]
    texts, offsets, _ = offsets_from_ids(tiny_lm.tokenizer, ids)
    raw_trace = TokenTrace(ids, texts, offsets, [0.0] * len(ids), [0.0] * len(ids))
    generation = Generation(conversation=[{"role": "user", "content": "q"}, {"role": "assistant", "content": RAW}])
    with sqlite_db.sessions.begin() as session:
        row = add_generation(session, get_or_create_dataset(session, "d"), generation, trace=raw_trace)
        assert row is not None
        stored = trace_of(row)
        assert row.completion == nfc(RAW)
    assert stored is not None and "".join(stored.texts) == nfc(RAW)
    assert stored.offsets[-1][1] == len(nfc(RAW))
