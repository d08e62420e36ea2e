"""Annotation editing rules (core/editing.py): selections, undo/redo, overlaps, suggestions, merging."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.base.errors import UserError
from core.base.types import Span
from core.text.editing import (
    EditHistory,
    SpanGroup,
    Suggestion,
    accept_suggestions,
    add_span,
    default_pick,
    delete_span,
    diff_sets,
    majority_gold,
    merge_groups,
    normalise_spans,
    relabel,
    selection_to_span,
    set_note,
    suggest_spans,
    utf16_selection_to_span,
)
from core.text.tokens import codepoint_to_utf16

NS, SUP, II, NA = "Not Supported", "Supported", "Insufficient Information", "N/A"

# --- selections -------------------------------------------------------------------------

# "The capital is Paris." tokenised GPT-style, leading spaces glued to words.
TEXT = "The capital is Paris."
OFFSETS = [(0, 3), (3, 11), (11, 14), (14, 20), (20, 21)]  # The| capital| is| Paris|.


def test_selection_snaps_to_tokens_and_trims_the_leading_space():
    assert TEXT[14:20] == " Paris"
    assert selection_to_span(OFFSETS, 3, 3, text=TEXT) == (15, 20)
    assert selection_to_span(OFFSETS, 1, 3, text=TEXT) == (4, 20)  # "capital is Paris"
    assert selection_to_span(OFFSETS, 3, 1, text=TEXT) == (4, 20)  # backwards drag


def test_selection_trims_trailing_whitespace_tokens():
    text = "Paris \n\nnext"
    offsets = [(0, 5), (5, 8), (8, 12)]
    assert selection_to_span(offsets, 0, 1, text=text) == (0, 5)


def test_selection_trims_punctuation_at_its_ends_but_keeps_it_inside():
    # a drag that ends a few pixels into the "." (or a comma) marks the words without it
    assert selection_to_span(OFFSETS, 3, 4, text=TEXT) == (15, 20)  # "Paris", not "Paris."
    text = "He said («Black Sperzsherach», 1902) -40 °C at 72%, Dr. Sato."
    words = [
        "He",
        " said",
        " («",
        "Black",
        " Sper",
        "zsh",
        "erach",
        "»,",
        " ",
        "1902",
        ")",
        " -",
        "40",
        " °C",
        " at",
        " 72",
        "%,",
        " Dr",
        ".",
        " Sato",
        ".",
    ]
    assert "".join(words) == text
    offsets, pos = [], 0
    for w in words:
        offsets.append((pos, pos + len(w)))
        pos += len(w)

    def sel(a: str, b: str) -> str:
        last = len(words) - 1 - words[::-1].index(b)  # the last token with text b
        start, end = selection_to_span(offsets, words.index(a), last, text=text)
        return text[start:end]

    assert sel(" («", "»,") == "Black Sperzsherach"  # brackets, quotes and the comma
    assert sel(" («", " ") == "Black Sperzsherach"
    assert sel("»,", ")") == "1902"
    assert sel(" -", " °C") == "-40 °C"  # a minus sign stays; ° is a symbol, not punctuation
    assert sel(" 72", "%,") == "72%"  # so does a per cent sign; the comma goes
    assert sel(" Dr", ".") == "Dr. Sato"  # inside, punctuation stays
    assert sel("»,", "»,") == "»,"  # punctuation alone stays selectable
    # Alt (character precision) is not trimmed at all
    assert selection_to_span(offsets, 0, 0, text=text, char_start=text.index("Sato"), char_end=len(text)) == (
        text.index("Sato"),
        len(text),
    )


def test_whitespace_only_or_out_of_range_selection_is_refused():
    text = "a   b"
    with pytest.raises(UserError, match="whitespace"):
        selection_to_span([(0, 1), (1, 4), (4, 5)], 1, 1, text=text)
    with pytest.raises(UserError, match="outside"):
        selection_to_span(OFFSETS, 0, 9, text=TEXT)


def test_alt_selection_uses_character_positions_as_given():
    # Alt: mark only "Par" inside the token " Paris"; no snapping, no trimming.
    assert selection_to_span(OFFSETS, 3, 3, text=TEXT, char_start=15, char_end=18) == (15, 18)
    assert selection_to_span(OFFSETS, 0, 0, text=TEXT, char_start=20, char_end=14) == (14, 20)
    for bad in [(-1, 3), (5, 99), (4, 4), (3, None)]:
        with pytest.raises(UserError):
            selection_to_span(OFFSETS, 0, 0, text=TEXT, char_start=bad[0], char_end=bad[1])


def test_utf16_selection_counts_emoji_as_two_units():
    text = "I 😀 Paris 👍🏽!"
    start = text.index("Paris")
    u16 = codepoint_to_utf16(text, start)
    assert u16 == start + 1  # one astral character before it
    assert utf16_selection_to_span(text, u16, u16 + 5) == (start, start + 5)
    assert utf16_selection_to_span(text, u16 + 5, u16) == (start, start + 5)


def test_utf16_selection_inside_a_surrogate_pair_widens_to_the_whole_character():
    text = "a😀b"
    assert utf16_selection_to_span(text, 2, 3) == (1, 2)  # starts mid-emoji
    assert utf16_selection_to_span(text, 0, 2) == (0, 2)  # ends mid-emoji
    with pytest.raises(UserError):
        utf16_selection_to_span(text, 0, 99)
    with pytest.raises(UserError):
        utf16_selection_to_span(text, 1, 1)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from("aé 東😀👍🏽\n"), min_size=1, max_size=20), st.data())
def test_utf16_selection_round_trips_code_point_spans(text, data):
    start = data.draw(st.integers(0, len(text) - 1))
    end = data.draw(st.integers(start + 1, len(text)))
    u16 = (codepoint_to_utf16(text, start), codepoint_to_utf16(text, end))
    assert utf16_selection_to_span(text, *u16) == (start, end)
    # The selected text is what the browser showed: same string in UTF-16 units.
    encoded = text.encode("utf-16-le")
    assert encoded[2 * u16[0] : 2 * u16[1]].decode("utf-16-le") == text[start:end]


# --- undo / redo ------------------------------------------------------------------------

A, B, C = [Span(0, 1, NS)], [Span(0, 2, NS)], [Span(5, 6, SUP)]


def test_undo_redo_walks_back_and_forth():
    h = EditHistory()
    assert not h.can_undo and not h.can_redo
    h.apply(A)
    h.apply(B)
    assert h.undo() == A and h.can_redo
    assert h.undo() == [] and not h.can_undo
    assert h.undo() == []  # nothing left: unchanged, no error
    assert h.redo() == A
    assert h.redo() == B and not h.can_redo
    assert h.redo() == B


def test_apply_after_undo_drops_the_redo_branch():
    h = EditHistory(A)
    h.apply(B)
    h.undo()
    h.apply(C)
    assert not h.can_redo and h.current == C
    assert h.undo() == A


def test_history_is_bounded_and_ignores_no_op_changes():
    h = EditHistory(limit=3)
    for i in range(10):
        h.apply([Span(0, i + 1, NS)])
    h.apply(h.current)  # no change: no step
    steps = 0
    while h.can_undo:
        h.undo()
        steps += 1
    assert steps == 3 and h.current == [Span(0, 7, NS)]


def test_history_snapshots_cannot_be_mutated_by_callers():
    h = EditHistory()
    spans = [Span(0, 1, NS)]
    h.apply(spans)
    spans.append(Span(3, 4, NS))
    h.current.append(Span(9, 9, NS))
    assert h.current == [Span(0, 1, NS)]


# --- span operations ----------------------------------------------------------------------


def test_add_span_merges_same_label_overlaps():
    spans = [Span(0, 5, NS, "checked"), Span(8, 12, NS)]
    assert add_span(spans, Span(4, 9, "hallucinated")) == [Span(0, 12, NS, "checked")]
    assert add_span(spans, Span(5, 8, NS)) == [Span(0, 5, NS, "checked"), Span(5, 8, NS), Span(8, 12, NS)]  # touching


def test_add_span_new_span_wins_and_cuts_others():
    old = [Span(0, 20, SUP, "n")]
    # Cut in two: both pieces kept, label and note copied.
    assert add_span(old, Span(5, 10, NS)) == [Span(0, 5, SUP, "n"), Span(5, 10, NS), Span(10, 20, SUP, "n")]
    # Trimmed on one side.
    assert add_span(old, Span(15, 25, NS)) == [Span(0, 15, SUP, "n"), Span(15, 25, NS)]
    # Covered entirely: removed.
    assert add_span(old, Span(0, 20, II)) == [Span(0, 20, II)]


def test_add_span_trims_whitespace_from_leftover_pieces_when_given_text():
    text = "New York City"
    old = [Span(0, 13, NS)]
    assert add_span(old, Span(4, 8, SUP), text=text) == [Span(0, 3, NS), Span(4, 8, SUP), Span(9, 13, NS)]


def test_add_span_merges_through_and_swallows():
    # A new NS span bridging two NS spans merges all three; the merged span, being the new
    # span, then wins over the Supported span it now covers.
    spans = [Span(0, 5, NS), Span(6, 12, NS), Span(20, 30, SUP)]
    assert add_span(spans, Span(4, 7, NS)) == [Span(0, 12, NS), Span(20, 30, SUP)]
    assert add_span(spans, Span(10, 25, NS)) == [Span(0, 5, NS), Span(6, 25, NS), Span(25, 30, SUP)]


def test_normalise_spans_lets_later_spans_win():
    spans = [Span(0, 5, NS), Span(7, 8, SUP), Span(6, 12, NS), Span(2, 3, "supported")]
    assert normalise_spans(spans) == [Span(0, 2, NS), Span(2, 3, SUP), Span(3, 5, NS), Span(6, 12, NS)]


def test_add_span_rejects_empty_spans_and_unknown_labels():
    with pytest.raises(UserError):
        add_span([], Span(3, 3, NS))
    with pytest.raises(UserError):
        add_span([], Span(0, 3, "wrong"))


def _valid(spans: list[Span]) -> bool:
    for i, a in enumerate(spans):
        for b in spans[i + 1 :]:
            if a.start < b.end and b.start < a.end:
                return False  # different labels must not overlap; same labels are merged
    return all(s.start < s.end for s in spans)


_labels = st.sampled_from([NS, SUP, II, NA])
_spans = st.builds(lambda s, w, lab: Span(s, s + w, lab), st.integers(0, 30), st.integers(1, 10), _labels)


@settings(max_examples=300, deadline=None)
@given(st.lists(_spans, max_size=8), _spans)
def test_add_span_always_returns_a_valid_set_containing_the_new_span(spans, new):
    result = add_span(spans, new)
    assert _valid(result)
    assert any(s.label == new.label and s.start <= new.start and new.end <= s.end for s in result)
    assert result == sorted(result, key=lambda s: (s.start, s.end, s.label))


@settings(max_examples=200, deadline=None)
@given(st.lists(_spans, max_size=8))
def test_normalized_characters_keep_the_last_label_written(spans):
    result = normalise_spans(spans)
    assert _valid(result)
    for pos in range(45):
        writers = [s.label for s in spans if s.start <= pos < s.end]
        holders = [s.label for s in result if s.start <= pos < s.end]
        assert holders == (writers[-1:] if writers else [])


def test_delete_relabel_and_note():
    spans = [Span(0, 3, NS), Span(5, 9, SUP)]
    assert delete_span(spans, 0) == [Span(5, 9, SUP)]
    assert relabel(spans, 1, "hallucinated") == [Span(0, 3, NS), Span(5, 9, NS)]
    assert set_note(spans, 0, "  see wiki ") == [Span(0, 3, NS, "see wiki"), Span(5, 9, SUP)]
    assert set_note(set_note(spans, 0, "x"), 0, "  ") == spans
    with pytest.raises(UserError):
        delete_span(spans, 2)
    with pytest.raises(UserError):
        relabel(spans, 0, "bogus")


def test_relabel_keeps_the_set_valid_with_neighbours():
    spans = [Span(0, 5, NS), Span(5, 9, SUP)]
    assert relabel(spans, 1, NS) == [Span(0, 5, NS), Span(5, 9, NS)]  # touching: not merged


# --- suggestions ----------------------------------------------------------------------------


def test_suggest_spans_from_runs_of_high_scores():
    text = "Lviv was founded in 1256 by King Daniel."
    offsets = [(0, 4), (4, 8), (8, 16), (16, 19), (19, 24), (24, 27), (27, 32), (32, 39), (39, 40)]
    scores = [0.9, 0.1, 0.2, 0.6, 0.95, 0.1, 0.7, 0.8, 0.2]
    got = suggest_spans(offsets, scores, 0.5, text)
    assert got == [Suggestion(0, 4, 0.9), Suggestion(17, 24, 0.95), Suggestion(28, 39, 0.8)]
    assert [text[s.start : s.end] for s in got] == ["Lviv", "in 1256", "King Daniel"]


def test_suggest_spans_drops_whitespace_runs_and_handles_nan():
    text = "a   b"
    offsets = [(0, 1), (1, 4), (4, 5)]
    assert suggest_spans(offsets, [0.1, 0.9, 0.1], 0.5, text) == []
    assert suggest_spans(offsets, [0.9, float("nan"), 0.9], 0.5, text) == [Suggestion(0, 1, 0.9), Suggestion(4, 5, 0.9)]
    with pytest.raises(UserError):
        suggest_spans(offsets, [0.1], 0.5, text)


def test_accept_suggestions_by_minimum_score_without_overwriting_people():
    existing = [Span(0, 4, SUP)]
    sugs = [Suggestion(0, 4, 0.99), Suggestion(10, 14, 0.9), Suggestion(20, 24, 0.6)]
    assert accept_suggestions(existing, sugs, 0.8) == [Span(0, 4, SUP), Span(10, 14, NS)]
    assert accept_suggestions(existing, sugs, 0.5, label="unverifiable", overwrite=True) == [
        Span(0, 4, II),
        Span(10, 14, II),
        Span(20, 24, II),
    ]


# --- diff / merge / majority ----------------------------------------------------------------


def _sets():
    return {
        "ann": [Span(0, 4, NS), Span(10, 15, SUP), Span(30, 35, NS)],
        "bob": [Span(0, 4, NS), Span(10, 13, SUP), Span(20, 25, NS)],
        "cat": [Span(0, 4, NS), Span(10, 15, NS)],
        "dan": None,  # did not annotate this generation
    }


def test_diff_sets_groups_overlapping_spans_across_annotators():
    groups = diff_sets(_sets())
    ranges = [(g.start, g.end, g.agree) for g in groups]
    assert ranges == [(0, 4, True), (10, 15, False), (20, 25, False), (30, 35, False)]
    assert list(groups[0].spans) == ["ann", "bob", "cat"]  # dan excluded
    assert groups[1].spans == {"ann": (Span(10, 15, SUP),), "bob": (Span(10, 13, SUP),), "cat": (Span(10, 15, NS),)}
    assert groups[2].spans["ann"] == ()


def test_diff_sets_chains_overlaps_and_keeps_split_spans_together():
    sets = {"ann": [Span(0, 8, NS), Span(9, 13, NS)], "bob": [Span(0, 13, NS)]}
    (group,) = diff_sets(sets)
    assert (group.start, group.end, group.agree) == (0, 13, False)
    assert len(group.spans["ann"]) == 2


def test_default_pick_rules():
    groups = diff_sets(_sets())
    assert [default_pick(g) for g in groups] == [
        "ann",  # all agree
        "ann",  # no exact majority; Supported is the majority label (ann, bob) -> first of them
        "none",  # majority (ann, cat) marked nothing here
        "none",
    ]
    two = diff_sets({"x": [Span(0, 3, SUP)], "y": [Span(0, 3, NS)]})
    assert default_pick(two[0]) == "x"  # 1-1 tie: first annotator


def test_merge_groups_builds_gold_from_picks():
    groups = diff_sets(_sets())
    assert merge_groups(groups) == [Span(0, 4, NS), Span(10, 15, SUP)]
    picked = merge_groups(groups, {1: "cat", 2: "bob", 3: "none"})
    assert picked == [Span(0, 4, NS), Span(10, 15, NS), Span(20, 25, NS)]
    with pytest.raises(UserError, match="not one of the annotators"):
        merge_groups(groups, {0: "dan"})
    with pytest.raises(UserError, match="no review group"):
        merge_groups(groups, {9: "ann"})


def test_majority_gold_needs_a_strict_majority_of_the_annotators_present():
    assert majority_gold(_sets()) == [Span(0, 4, NS)]  # 3/3 agree only on the first group
    two_of_three = {"a": [Span(0, 4, NS)], "b": [Span(0, 4, "hallucinated")], "c": []}
    assert majority_gold(two_of_three) == [Span(0, 4, NS)]
    one_of_two = {"a": [Span(0, 4, NS)], "b": []}
    assert majority_gold(one_of_two) == []
    assert majority_gold({"a": [Span(0, 4, NS)], "b": None}) == [Span(0, 4, NS)]  # b absent: 1 of 1
    assert majority_gold({}) == []


def test_span_group_is_plain_data():
    g = SpanGroup(0, 1, {"a": (Span(0, 1, NS),)}, agree=True)
    assert g.spans["a"][0].label == NS
