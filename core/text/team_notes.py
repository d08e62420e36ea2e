"""Comments and skips in interchange records: `comments_by` and `skips_by` (docs/formats.md).

Exports of everyone's sets (`--which all`) carry, beside `annotations_by`, the team's notes on
each answer, keyed by user name like `annotations_by`:

    "comments_by": {"ann1": [{"body": "...", "flagged": true, "created_at": "...",
                              "resolved_at": null, "resolved_by": null}]},
    "skips_by": {"ann2": "2026-12-07T14:00:00+00:00"}

An import reads them back (the named people must have accounts). This module builds and
checks the fields; it knows no database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.base.errors import UserError

COMMENTS_KEY = "comments_by"
SKIPS_KEY = "skips_by"
NOTE_KEYS = (COMMENTS_KEY, SKIPS_KEY)
MAX_NOTES_PER_ANSWER = 10_000


@dataclass(frozen=True)
class NoteComment:
    author: str
    body: str
    flagged: bool = False
    created_at: datetime | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None


@dataclass(frozen=True)
class NoteSkip:
    user: str
    skipped_at: datetime | None = None


@dataclass(frozen=True)
class TeamNotes:
    """One record's comments and skips (empty when the record has neither field)."""

    comments: tuple[NoteComment, ...] = ()
    skips: tuple[NoteSkip, ...] = ()

    def names(self) -> set[str]:
        """Every user name the notes need an account for."""
        found = {c.author for c in self.comments} | {s.user for s in self.skips}
        return found | {c.resolved_by for c in self.comments if c.resolved_by}


def _when(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def notes_fields(comments: list[NoteComment], skips: list[NoteSkip]) -> dict[str, Any]:
    """The two record fields (always both, maybe empty), people in name order."""
    by: dict[str, list[dict[str, Any]]] = {}
    for c in comments:
        by.setdefault(c.author, []).append(
            {
                "body": c.body,
                "flagged": c.flagged,
                "created_at": _when(c.created_at),
                "resolved_at": _when(c.resolved_at),
                "resolved_by": c.resolved_by,
            }
        )
    return {
        COMMENTS_KEY: dict(sorted(by.items())),
        SKIPS_KEY: {s.user: _when(s.skipped_at) for s in sorted(skips, key=lambda s: s.user)},
    }


def _name(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{field} must be keyed by user names (non-empty text), not {value!r}")
    return value


def _moment(value: object, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise UserError(f"{what} must be an ISO date-time text or null, not {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(f"{what} is not an ISO date-time ({value[:40]!r})") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _comment(author: str, entry: object) -> NoteComment:
    where = f"{COMMENTS_KEY}[{author!r}]"
    if not isinstance(entry, Mapping):
        raise UserError(f"{where} must be a list of objects with a 'body'")
    unknown = set(entry) - {"body", "flagged", "created_at", "resolved_at", "resolved_by"}
    if unknown:
        raise UserError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    body, flagged, resolved_by = entry.get("body", ""), entry.get("flagged", False), entry.get("resolved_by")
    if not isinstance(body, str):
        raise UserError(f"{where}: 'body' must be text")
    if not isinstance(flagged, bool):
        raise UserError(f"{where}: 'flagged' must be true or false")
    if resolved_by is not None:
        resolved_by = _name(resolved_by, f"{where}: 'resolved_by'")
    return NoteComment(
        author,
        body,
        flagged,
        _moment(entry.get("created_at"), f"{where}: 'created_at'"),
        _moment(entry.get("resolved_at"), f"{where}: 'resolved_at'"),
        resolved_by,
    )


def parse_notes(record: Mapping[str, Any]) -> TeamNotes:
    """The record's `comments_by` and `skips_by`, checked; UserError naming the field if bad."""
    comments_by, skips_by = record.get(COMMENTS_KEY), record.get(SKIPS_KEY)
    comments: list[NoteComment] = []
    skips: list[NoteSkip] = []
    if comments_by is not None:
        if not isinstance(comments_by, Mapping):
            raise UserError(f"{COMMENTS_KEY} must be an object: user name -> list of comments")
        for author, entries in comments_by.items():
            _name(author, COMMENTS_KEY)
            if not isinstance(entries, list):
                raise UserError(f"{COMMENTS_KEY}[{author!r}] must be a list of comments")
            comments.extend(_comment(author, entry) for entry in entries)
    if skips_by is not None:
        if not isinstance(skips_by, Mapping):
            raise UserError(f"{SKIPS_KEY} must be an object: user name -> when they skipped (or null)")
        for user, when in skips_by.items():
            skips.append(NoteSkip(_name(user, SKIPS_KEY), _moment(when, f"{SKIPS_KEY}[{user!r}]")))
    if len(comments) + len(skips) > MAX_NOTES_PER_ANSWER:
        raise UserError(f"at most {MAX_NOTES_PER_ANSWER} comments and skips per answer")
    return TeamNotes(tuple(comments), tuple(skips))
