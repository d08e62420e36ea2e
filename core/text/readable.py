"""Words for people: counted nouns and stored values (event before/after) as plain text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.base.types import LABEL_WORDS
from core.text.tokens import canonical_label

_IRREGULAR = {"entry": "entries", "reply": "replies", "was": "were", "is": "are"}


def plural(n: int, word: str) -> str:
    """ "1 answer", "2 answers", "0 answers"."""
    if n == 1:
        return f"{n} {word}"
    return f"{n} {_IRREGULAR.get(word, word + 's')}"


def readable(value: Any) -> str:
    """A stored JSON value as a short line a person reads: no braces, quotes or "None"."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        parts = [f"{key.replace('_', ' ')}: {readable(item)}" for key, item in value.items()]
        return ", ".join(parts) if parts else "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(readable(item) for item in value) if value else "—"
    return str(value)


def label_word(label: str) -> str:
    """The one word people see for a label, everywhere (hallucinated, unverifiable, supported,
    ignore); the paper's names (or the words themselves, any case) are accepted."""
    return LABEL_WORDS[canonical_label(label)]


def label_both(label: str) -> str:
    """The word and the paper's name, where a file format needs the paper's words:
    "hallucinated (Not Supported)"."""
    name = canonical_label(label)
    return f"{LABEL_WORDS[name]} ({name})"


def readable_lines(value: Any) -> str:
    """A stored JSON value in full, one top-level field a line (the event log's before/after,
    shown whole where a table cell would cut it off)."""
    if isinstance(value, dict) and value:
        return "\n".join(f"{key.replace('_', ' ')}: {readable(item)}" for key, item in value.items())
    return readable(value)


def event_summary(action: str, entity: str, entity_id: int | None, detail: str | None, before: Any, after: Any) -> str:
    """What an event did, in one line naming whom or what (its stored detail when it has one):
    "added bob as annotator", "deactivate user bob", "save annotation_set #12"."""
    if detail:
        return detail
    named = next((side.get("name") for side in (after, before) if isinstance(side, dict) and side.get("name")), None)
    target = f"{entity} {named}" if named else (f"{entity} #{entity_id}" if entity_id is not None else entity)
    return f"{action.rsplit('.', 1)[-1]} {target}"


def readable_table(rows: Sequence[dict], columns: dict[str, str], digits: int = 3) -> list[dict]:
    """Rows with human headings and floats rounded for reading (None stays None: shown blank)."""

    def shown(value: Any) -> Any:
        return round(value, digits) if isinstance(value, float) else value

    return [{columns.get(key, key.replace("_", " ")): shown(value) for key, value in row.items()} for row in rows]


#: Table column widths in pixels: per character of the widest text, padding (sort arrow, margins), bounds.
CHAR_PX, PAD_PX, MIN_PX, MAX_PX = 8, 32, 56, 640


def fitted_widths(rows: Sequence[dict], digits: int = 3) -> dict[str, int]:
    """A pixel width per column that shows its header and its longest value whole (floats as
    shown, with `digits` decimals), so no column of a wide table is cut off."""
    widest: dict[str, int] = {}
    for row in rows:
        for key, value in row.items():
            text = f"{value:.{digits}f}" if isinstance(value, float) else ("" if value is None else str(value))
            widest[key] = max(widest.get(key, len(str(key))), len(text), len(str(key)))
    return {key: max(MIN_PX, min(MAX_PX, n * CHAR_PX + PAD_PX)) for key, n in widest.items()}
