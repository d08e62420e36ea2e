"""What a reviewer reads about one merge group: who said what, in the words the UI uses.

A merge group (`core.text.editing.SpanGroup`) holds each annotator's spans over one region.
Names alone do not let a reviewer decide, so each row says, per person, the label word and
the exact text they marked ("anna: unverifiable '1256' · rob: hallucinated 'in 1256'"), and
the page header lists the same character ranges as the rows, so the two can be matched.
Plain text: the page escapes it (core.text.markdown.md_escape) before rendering.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.base.types import LABEL_WORDS as LABEL_WORDS
from core.base.types import Span
from core.text.editing import SpanGroup
from core.text.readable import label_word as label_word

NOTHING = "nothing marked"
SEPARATOR = " · "


def version_said(spans: Sequence[Span], text: str) -> str:
    """One person's version of a group: label word and exact text of each span (repr, so
    spaces and line breaks at the edges show), joined by " + "; "nothing marked" if none."""
    if not spans:
        return NOTHING
    return " + ".join(f"{label_word(s.label)} {text[s.start : s.end]!r}" for s in spans)


def said_by(group: SpanGroup, text: str) -> dict[str, str]:
    """Per annotator of the group (in the group's order), what they said there."""
    return {name: version_said(spans, text) for name, spans in group.spans.items()}


def group_summary(group: SpanGroup, text: str) -> str:
    """Every annotator's version on one line: "anna: unverifiable '1256' · rob: hallucinated '1256'"."""
    return SEPARATOR.join(f"{name}: {said}" for name, said in said_by(group, text).items())


def group_range(group: SpanGroup) -> str:
    """The character range as every part of the page writes it ("20–24")."""
    return f"{group.start}–{group.end}"


def disagreeing_ranges(groups: Sequence[SpanGroup]) -> list[tuple[int, int]]:
    """The (start, end) of every group whose annotators do not agree, in text order: the
    header's list, taken from the same groups as the rows so the numbers match."""
    return [(g.start, g.end) for g in groups if not g.agree]
