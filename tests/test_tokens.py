"""Span <-> token alignment, labels and UTF-16 conversion (core/tokens.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.base.errors import UserError
from core.base.types import IGNORE, Span
from core.text.tokens import (
    canonical_label,
    char_span_to_token_range,
    codepoint_to_utf16,
    completion_offsets,
    label_value,
    nfc,
    repair_offsets,
    resolve_annotations,
    resolve_annotations_detail,
    token_labels,
    token_ranges_to_char_span,
    utf16_to_codepoint,
)

# --- labels ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Not Supported", "Not Supported"),
        ("  not   supported ", "Not Supported"),
        ("INSUFFICIENT INFORMATION", "Insufficient Information"),
        ("Supported", "Supported"),
        ("n/a", "N/A"),
        ("NA", "N/A"),
        ("hallucinated", "Not Supported"),
        ("Unverifiable", "Insufficient Information"),
        ("supported", "Supported"),
        ("ignore", "N/A"),
    ],
)
def test_canonical_label_accepts_paper_labels_and_ui_aliases(raw, expected):
    assert canonical_label(raw) == expected


def test_unknown_label_message_names_label_and_choices():
    with pytest.raises(UserError) as err:
        canonical_label("Maybe")
    assert str(err.value) == (
        "unknown label 'Maybe' (expected one of: Not Supported, Insufficient Information, Supported, N/A)"
    )


def test_non_string_label_is_a_user_error():
    with pytest.raises(UserError, match="unknown label 3"):
        canonical_label(3)  # type: ignore[arg-type]


def test_label_value():
    assert label_value("hallucinated") == 1
    assert label_value("Insufficient Information") == 1
    assert label_value("supported") == 0
    assert label_value("N/A") is None


def test_nfc_composes():
    assert nfc("e\u0301") == "\u00e9"


# --- resolve_annotations -----------------------------------------------------------------

TEXT = "Lviv was called Lemberg. Later Lemberg became Lwów, and Lemberg again."


def test_resolve_by_index_keeps_note_and_canonical_label():
    ann = [{"span": "Lemberg", "index": 16, "label": "not supported", "verification_note": "wrong"}]
    res = resolve_annotations_detail(TEXT, ann)
    assert res.spans == [Span(16, 23, "Not Supported", "wrong")]
    assert (res.by_index, res.by_search, res.unmatched) == (1, 0, [])


def test_resolve_by_search_when_index_wrong_or_missing():
    ann = [{"span": "Lviv", "index": 5, "label": "Supported"}, {"span": "Lwów", "label": "Supported"}]
    res = resolve_annotations_detail(TEXT, ann)
    assert res.spans == [Span(0, 4, "Supported"), Span(46, 50, "Supported")]
    assert (res.by_index, res.by_search) == (0, 2)


def test_search_starts_at_previous_span_for_repeated_entities():
    ann = [
        {"span": "Lemberg", "label": "Supported"},
        {"span": "Lemberg", "label": "Not Supported"},  # same start allowed: found again at 16
        {"span": "Lwów", "index": 46, "label": "Supported"},
        {"span": "Lemberg", "label": "Not Supported"},  # first Lemberg at/after 46 is the third
    ]
    spans, unmatched = resolve_annotations(TEXT, ann)
    assert [s.start for s in spans] == [16, 16, 46, 56]
    assert unmatched == []


def test_search_does_not_look_back_before_previous_span():
    ann = [{"span": "Lwów", "index": 46, "label": "Supported"}, {"span": "Lviv", "label": "Supported"}]
    spans, unmatched = resolve_annotations(TEXT, ann)
    assert spans == [Span(46, 50, "Supported")]
    assert len(unmatched) == 1 and unmatched[0].text == "Lviv"
    assert "at or after position 46" in unmatched[0].reason


def test_unmatched_and_empty_spans_are_reported_not_guessed():
    ann = [
        {"span": "Paris", "index": 3, "label": "Not Supported"},
        {"span": "", "index": 0, "label": "Supported"},
        {"span": "Lviv", "index": 0, "label": "Supported"},
    ]
    spans, unmatched = resolve_annotations(TEXT, ann)
    assert spans == [Span(0, 4, "Supported")]
    assert [(u.text, u.index, u.label) for u in unmatched] == [("Paris", 3, "Not Supported"), ("", 0, "Supported")]
    assert "not found in the completion" in unmatched[0].reason
    assert "index 3 does not match" in unmatched[0].reason
    assert "empty" in unmatched[1].reason


def test_resolve_nfc_normalises_span_text():
    text = nfc("Caf\u00e9 Zürich")
    spans, _ = resolve_annotations(text, [{"span": "Cafe\u0301", "index": 0, "label": "Supported"}])
    assert spans == [Span(0, 4, "Supported")]


def test_negative_index_falls_back_to_search():
    spans, _ = resolve_annotations(TEXT, [{"span": "again.", "index": -6, "label": "Supported"}])
    assert spans == [Span(64, 70, "Supported")]


def test_missing_label_is_na_and_unknown_label_raises():
    spans, _ = resolve_annotations(TEXT, [{"span": "Lviv", "index": 0}])
    assert spans[0].label == "N/A"
    with pytest.raises(UserError, match="unknown label 'Maybe'"):
        resolve_annotations(TEXT, [{"span": "Lviv", "index": 0, "label": "Maybe"}])


@pytest.mark.parametrize(
    "ann, message",
    [
        ("Lviv", "must be an object"),
        ({"span": 3, "label": "Supported"}, '"span" must be a string'),
        ({"span": "Lviv", "index": "0", "label": "Supported"}, '"index" must be an integer'),
        ({"span": "Lviv", "index": True, "label": "Supported"}, '"index" must be an integer'),
        ({"span": "Lviv", "label": "Supported", "verification_note": 1}, "verification_note"),
    ],
)
def test_malformed_annotation_raises(ann, message):
    with pytest.raises(UserError, match=message):
        resolve_annotations(TEXT, [ann])


# --- token_labels ------------------------------------------------------------------------

#            0    1    2     3     4     5      6      7
OFFSETS = [(0, 3), (3, 6), (6, 9), (9, 12), (12, 15), (15, 18), (18, 21), (21, 21)]


def test_overlap_background_and_zero_width():
    tl = token_labels(OFFSETS, [Span(4, 7, "Not Supported"), Span(13, 14, "Supported")])
    assert tl.labels.tolist() == [0, 1, 1, 0, 0, 0, 0, IGNORE]
    assert tl.span_ids.tolist() == [-1, 0, 0, -1, 1, -1, -1, -1]
    assert tl.span_labels.tolist() == [1, 0]
    assert tl.span_token_ranges == [(1, 3), (4, 5)]
    assert tl.in_span.tolist() == [False, True, True, False, True, False, False, False]
    assert tl.labels.dtype == np.int8 and tl.span_ids.dtype == np.int32 and tl.span_labels.dtype == np.int8


def test_touching_is_not_overlapping():
    tl = token_labels(OFFSETS, [Span(3, 6, "Not Supported")])
    assert tl.labels.tolist()[:3] == [0, 1, 0]


def test_na_spans_are_ignored_unless_a_scored_span_also_covers():
    tl = token_labels(OFFSETS, [Span(0, 7, "N/A"), Span(5, 6, "Supported")])
    assert tl.labels.tolist()[:4] == [IGNORE, 0, IGNORE, 0]
    assert tl.span_labels.tolist() == [0]
    assert tl.span_ids.tolist()[:3] == [-1, 0, -1]


def test_conflicting_overlaps_hallucinated_wins_first_span_id_kept():
    tl = token_labels(OFFSETS, [Span(0, 5, "Supported"), Span(4, 10, "Insufficient Information")])
    assert tl.labels.tolist()[:5] == [0, 1, 1, 1, 0]
    assert tl.span_ids.tolist()[:5] == [0, 0, 1, 1, -1]
    assert tl.span_labels.tolist() == [0, 1]
    assert tl.span_token_ranges == [(0, 2), (1, 4)]


def test_spans_covering_no_token_are_dropped():
    tl = token_labels(OFFSETS, [Span(21, 21, "Not Supported"), Span(30, 40, "Not Supported"), Span(0, 1, "Supported")])
    assert tl.span_labels.tolist() == [0]
    assert tl.span_ids.tolist()[0] == 0
    assert tl.labels[-1] == IGNORE  # zero-width token at 21 does not overlap anything


def test_byte_pieces_with_identical_offsets_share_labels():
    offsets = [(0, 2), (2, 3), (2, 3), (2, 3), (3, 5)]  # three byte tokens of one emoji
    tl = token_labels(offsets, [Span(2, 3, "Not Supported")])
    assert tl.labels.tolist() == [0, 1, 1, 1, 0]
    assert tl.span_token_ranges == [(1, 4)]


def test_empty_inputs():
    tl = token_labels([], [Span(0, 1, "Supported")])
    assert tl.labels.shape == (0,) and tl.span_labels.shape == (0,) and tl.span_token_ranges == []


def test_char_span_token_range_helpers():
    assert char_span_to_token_range(OFFSETS, 4, 10) == (1, 4)
    assert char_span_to_token_range(OFFSETS, 21, 25) is None
    assert char_span_to_token_range([], 0, 1) is None
    assert token_ranges_to_char_span(OFFSETS, 1, 4) == (3, 12)
    assert token_ranges_to_char_span(OFFSETS, 6, 8) == (18, 21)
    with pytest.raises(ValueError):
        token_ranges_to_char_span(OFFSETS, 3, 3)


# --- offsets repair and the tokenizer ------------------------------------------------------


def test_repair_offsets_clamps_orders_and_fills_gaps():
    # trimmed whitespace (gaps), a start going backwards, an end past the text
    raw = [(0, 0), (1, 3), (2, 4), (1, 5), (7, 9), (8, 30)]
    assert repair_offsets(raw, 12) == [(0, 0), (0, 3), (2, 4), (2, 5), (5, 9), (8, 12)]
    assert repair_offsets([(0, 2)], 5) == [(0, 5)]
    assert repair_offsets([], 3) == []


def test_completion_offsets_matches_tokenizer(tiny_tokenizer):
    text = "Lviv 😀 東京\n\n  Zürich"
    ids, offsets = completion_offsets(tiny_tokenizer, text)
    assert ids == tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(offsets) == len(ids)
    assert tiny_tokenizer.decode(ids) == text


def test_completion_offsets_needs_offsets():
    class Slow:
        def __call__(self, text, **kwargs):
            raise NotImplementedError("return_offset_mapping is not available")

    with pytest.raises(UserError, match="fast tokenizer"):
        completion_offsets(Slow(), "hi")


_ALPHABET = st.one_of(
    st.sampled_from(
        list("abc xyz.,\n\t") + ["  ", "😀", "👍🏽", "👨\u200d👩\u200d👧", "東京", "é", "e\u0301", "\u0301", "Ω"]
    ),
    st.characters(blacklist_categories=("Cs",)),
)
_TEXTS = st.lists(_ALPHABET, min_size=1, max_size=40).map("".join)


def _assert_covers(text: str, offsets: list[tuple[int, int]]) -> None:
    covered = np.zeros(len(text), dtype=bool)
    rebuilt, reach = [], 0
    for (s, e), (prev_s, _) in zip(offsets, [(0, 0)] + offsets[:-1]):
        assert 0 <= s <= e <= len(text) and s >= prev_s
        covered[s:e] = True
        if e > reach:
            rebuilt.append(text[max(s, reach) : e])
            reach = e
    assert covered.all()
    assert "".join(rebuilt) == text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_TEXTS, data=st.data())
def test_offsets_cover_text_and_span_ranges_contain_spans(tiny_tokenizer, text, data):
    text = nfc(text)
    ids, offsets = completion_offsets(tiny_tokenizer, text)
    _assert_covers(text, offsets)
    a = data.draw(st.integers(0, len(text) - 1))
    b = data.draw(st.integers(a + 1, len(text)))
    rng = char_span_to_token_range(offsets, a, b)
    assert rng is not None
    first, last = rng
    for i, (s, e) in enumerate(offsets):
        assert (first <= i < last) == (s < b and a < e and s < e)
    cs, ce = token_ranges_to_char_span(offsets, first, last)
    assert cs <= a and b <= ce
    tl = token_labels(offsets, [Span(a, b, "Not Supported")])
    assert tl.span_token_ranges == [rng]
    assert set(tl.labels[first:last].tolist()) == {1}


# --- UTF-16 -------------------------------------------------------------------------------


def test_utf16_examples():
    text = "a😀b"
    assert [codepoint_to_utf16(text, i) for i in range(4)] == [0, 1, 3, 4]
    assert [utf16_to_codepoint(text, u) for u in range(5)] == [0, 1, 1, 2, 3]  # 2 splits the pair: snaps down
    with pytest.raises(ValueError):
        utf16_to_codepoint(text, 5)
    with pytest.raises(ValueError):
        utf16_to_codepoint(text, -1)
    with pytest.raises(ValueError):
        codepoint_to_utf16(text, 4 + 1)


@settings(max_examples=100, deadline=None)
@given(text=_TEXTS)
def test_utf16_round_trips(text):
    n16 = len(text.encode("utf-16-le")) // 2
    for i in range(len(text) + 1):
        u = codepoint_to_utf16(text, i)
        assert utf16_to_codepoint(text, u) == i
    for u in range(n16 + 1):
        i = utf16_to_codepoint(text, u)
        assert codepoint_to_utf16(text, i) in (u, u - 1)
    assert codepoint_to_utf16(text, len(text)) == n16


def test_completion_offsets_repairs_trimmed_offsets(tiny_tokenizer):
    """A tokenizer whose post-processor trims whitespace out of offsets still covers the text."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_str(tiny_tokenizer.backend_tokenizer.to_str())
    backend.post_processor = processors.ByteLevel(trim_offsets=True)
    trimmed = PreTrainedTokenizerFast(tokenizer_object=backend)
    text = "  Lviv  was 😀 here \n"
    raw = trimmed(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert any(s == e for s, e in raw)  # the raw offsets really do leave holes
    _, offsets = completion_offsets(trimmed, text)
    _assert_covers(text, offsets)


def test_riskiest_spans_are_whole_words():
    from core.text.tokens import whole_word_spans

    text = "The city of Lemberg was founded in 1256 by Daniel."
    lem, year = text.index("Lemberg"), text.index("1256")
    # runs over the threshold that cut words: "mbe" and "rg" of Lemberg, " 12" of the year
    runs = [(lem + 2, lem + 5, 0.7), (lem + 5, lem + 7, 0.9), (year - 1, year + 2, 0.6)]
    assert whole_word_spans(text, runs) == [(lem, lem + 7, 0.9), (year, year + 4, 0.6)]
    assert whole_word_spans(text, [(3, 4, 0.8)]) == []  # only a space: nothing to show
    assert whole_word_spans("naïve café", [(1, 2, 0.5)]) == [(0, 5, 0.5)]
