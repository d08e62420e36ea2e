"""The one way text a person or a file wrote becomes a file name: a safe slug.

Dataset names, user names and uploaded file names are user-controlled. They never become a
path component as written: a name like `x/../../tmp/evil` or `..` would walk out of the
folder it was meant for (and `mkdir(parents=True)` would happily create the way there).
`file_slug` keeps ASCII letters, digits and `-_.` (accents are dropped from their letters,
anything else becomes `_`), never starts with a dot or a dash, never holds `..`, is bounded in
length, avoids Windows device names (a download lands on someone's computer), and falls back
to a fixed name when nothing is left.
"""

from __future__ import annotations

import re
import string
import unicodedata

MAX_SLUG_LENGTH = 80
_ALLOWED = frozenset(string.ascii_letters + string.digits + "-_.")
_WINDOWS_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
)


def file_slug(text: object, *, fallback: str = "file", max_length: int = MAX_SLUG_LENGTH) -> str:
    """`text` as a file name that is safe as one path component on any system.

    The result matches `[A-Za-z0-9_][A-Za-z0-9_.-]*` without `..`, has 1 to `max_length`
    characters, and is `fallback` (itself slugged) when nothing usable is left of `text`.
    """
    limit = max(1, max_length)
    return _slug(text, limit) or _slug(fallback, limit) or "file"


def _slug(text: object, limit: int) -> str:
    value = unicodedata.normalize("NFKD", "" if text is None else str(text))
    value = "".join(c for c in value if not unicodedata.combining(c))
    value = "".join(c if c in _ALLOWED else "_" for c in value)
    value = re.sub(r"_{2,}", "_", re.sub(r"\.{2,}", ".", value))
    value = value.lstrip("._-")[:limit].rstrip("._-")
    if value and value.split(".")[0].upper() in _WINDOWS_DEVICES:
        value = ("_" + value)[:limit].rstrip("._-")
    return value


def widget_key(prefix: str, text: str) -> str:
    """A Streamlit widget key for something a user named: a digest, never the text itself
    (a name with "__" broke a component's id; keys also appear in the page's CSS classes)."""
    import hashlib

    return f"{prefix}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}"
