"""Review's merge rows (issue #14, item 11): what each person said, the ranges the header lists,
and which answer comes after a gold save."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from core.base.types import Span
from core.orchestration.review_queue import next_unsettled, review_candidates
from core.text.editing import diff_sets
from core.text.review_groups import (
    LABEL_WORDS,
    disagreeing_ranges,
    group_range,
    group_summary,
    label_word,
    said_by,
    version_said,
)

TEXT = "Lviv was founded in 1256 by Daniel."
NS, II, SUP, NA = "Not Supported", "Insufficient Information", "Supported", "N/A"


def test_each_row_says_what_each_person_said_with_label_word_and_exact_text():
    groups = diff_sets(
        {
            "anna": [Span(0, 4, SUP), Span(20, 24, II)],
            "rob": [Span(0, 4, SUP), Span(17, 24, NS)],
            "carl": [Span(0, 4, SUP)],
        }
    )
    assert [(g.start, g.end) for g in groups] == [(0, 4), (17, 24)]
    year = groups[1]
    assert said_by(year, TEXT) == {
        "anna": "unverifiable '1256'",
        "carl": "nothing marked",
        "rob": "hallucinated 'in 1256'",
    }
    # in the annotators' order (the page passes them sorted by name)
    assert group_summary(year, TEXT) == "anna: unverifiable '1256' · rob: hallucinated 'in 1256' · carl: nothing marked"
    assert group_summary(groups[0], TEXT) == "anna: supported 'Lviv' · rob: supported 'Lviv' · carl: supported 'Lviv'"


def test_several_spans_of_one_person_and_whitespace_show_as_they_are():
    spans = [Span(0, 4, SUP), Span(4, 8, NA)]
    assert version_said(spans, TEXT) == "supported 'Lviv' + ignore ' was'"
    assert version_said([Span(0, 6, NS)], "Paris\nis") == "hallucinated 'Paris\\n'"
    assert version_said([], TEXT) == "nothing marked"


def test_label_words_are_the_ui_words_for_every_spelling():
    assert set(LABEL_WORDS.values()) == {"hallucinated", "unverifiable", "supported", "ignore"}
    assert label_word("not supported") == "hallucinated" and label_word("unverifiable") == "unverifiable"
    assert label_word("N/A") == "ignore"


def test_header_ranges_are_the_disagreeing_groups_ranges():
    groups = diff_sets(
        {
            "alice": [Span(0, 4, SUP), Span(20, 24, NS), Span(28, 34, NS)],
            "bob": [Span(0, 4, SUP), Span(20, 24, SUP), Span(28, 34, NS)],
        }
    )
    ranges = disagreeing_ranges(groups)
    assert ranges == [(20, 24)]  # the character range of the row, not the token " 1256" (19–24)
    assert [group_range(g) for g in groups if not g.agree] == ["20–24"]
    assert disagreeing_ranges(diff_sets({"alice": [Span(0, 4, SUP)], "bob": [Span(0, 4, SUP)]})) == []


@dataclass
class Row:
    generation_id: int
    n_annotators: int
    has_gold: bool


def test_settled_answers_leave_the_top_of_the_list():
    rows = [Row(5, 2, True), Row(7, 2, False), Row(3, 1, False), Row(9, 0, False), Row(2, 1, True)]
    assert review_candidates(rows) == [7, 3, 5, 2]  # unlabelled 9 left out; settled 5 and 2 last
    assert review_candidates([Row(9, 0, False), Row(4, 0, True)]) == [9, 4]  # nobody labelled any


@pytest.mark.parametrize(
    "current, settled, expected",
    [
        (7, {5, 2}, 3),  # the next one down
        (3, {5, 2}, 7),  # past the end: round to the top
        (5, {5, 2}, 7),  # re-settling a settled answer: the first unsettled one
        (7, {5, 2, 3}, None),  # everything else has gold
        (99, {5}, 7),  # an answer not in the list
    ],
)
def test_after_a_save_the_next_unsettled_answer(current, settled, expected):
    assert next_unsettled([7, 3, 5, 2], settled, current) == expected
