"""What Annotate shows of the LLM judges' work on one answer (issue #24): their spans as editor
suggestions, and the evidence view, each suggestion with the passages it cites.

Everything here is plain data: the judge's note, a passage's title, URL and text are model
output or imported text, so the page shows them as text (st.text, or markdown through
`md_escape`), never as HTML and never as a link.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from db.judges import judged_spans
from db.references import PassageHit, passages_by_id

PASSAGE_CHARS_SHOWN = 300  # of a cited passage, what the editor's tooltip quotes


@dataclass(frozen=True)
class CitedPassage:
    """A passage a judge cited: its id, its document's title, URL and collection, its whole text."""

    id: int
    title: str
    url: str | None
    collection: str
    text: str


@dataclass(frozen=True)
class JudgeEvidence:
    """One judge suggestion on the answer (a span in NFC code points) and what it cites; `missing`
    counts cited passages no longer in the references."""

    judge: str
    start: int
    end: int
    text: str
    label: str
    note: str | None
    passages: list[CitedPassage]
    missing: int = 0


@dataclass(frozen=True)
class JudgeWork:
    """The judges' spans as editor suggestions ({start, end, score, label, note, source}; the
    note quotes the cited passages, cut short, for the tooltip) and the same spans' evidence."""

    suggestions: list[dict[str, Any]]
    evidence: list[JudgeEvidence]


def _tooltip_note(note: str | None, passages: list[PassageHit]) -> str | None:
    lines = [note or ""]
    for p in passages:
        cut = p.text[:PASSAGE_CHARS_SHOWN] + ("…" if len(p.text) > PASSAGE_CHARS_SHOWN else "")
        lines.append(f"[passage {p.id}] {p.title}: {cut}")
    return "\n".join(line for line in lines if line) or None


def judge_work(session: Session, generation_id: int, answer: str) -> JudgeWork:
    """Each judge's newest usable spans on `answer` (its NFC text), in the judge's order; a span
    that no longer fits the answer is left out, never guessed."""
    found = judged_spans(session, generation_id)
    wanted = [int(i) for _, spans in found for s in spans for i in s.get("evidence") or []]
    by_id = {p.id: p for p in passages_by_id(session, wanted)}
    suggestions: list[dict[str, Any]] = []
    evidence: list[JudgeEvidence] = []
    for judge, spans in found:
        for span in spans:
            start, end = int(span["start"]), int(span["end"])
            if not 0 <= start < end <= len(answer):
                continue
            ids = [int(i) for i in span.get("evidence") or []]
            cited = [by_id[i] for i in ids if i in by_id]
            note = span.get("note") or None
            suggestions.append(
                {
                    "start": start,
                    "end": end,
                    "score": 1.0,
                    "label": span["label"],
                    "note": _tooltip_note(note, cited),
                    "source": judge,
                }
            )
            evidence.append(
                JudgeEvidence(
                    judge,
                    start,
                    end,
                    answer[start:end],
                    span["label"],
                    note,
                    [CitedPassage(p.id, p.title, p.url, p.collection, p.text) for p in cited],
                    missing=len(ids) - len(cited),
                )
            )
    return JudgeWork(suggestions, evidence)
