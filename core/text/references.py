"""Reference documents for the LLM judge: read Markdown, plain text or JSONL, split into passages.

Pure: no database. `db.references` stores what this returns and indexes the passages with the
database's full-text search. Bad input is one `UserError` naming the file (and line), and
nothing is returned, so nothing is stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from core.base.errors import UserError
from core.text.formats import ServerPath, confine_to_import_root, max_import_mb
from core.text.tokens import nfc

SUFFIXES = (".md", ".markdown", ".txt", ".jsonl")
MAX_PASSAGE_CHARS = 1200  # a passage is at most this long: small enough to quote several per answer
MAX_TITLE_CHARS = 500
MAX_URL_CHARS = 2000


@dataclass(frozen=True)
class ReferenceDoc:
    """One reference text: its title, optional URL, the file it came from, and its passages."""

    title: str
    url: str | None
    source: str
    passages: tuple[str, ...]

    @property
    def content_hash(self) -> str:
        """Identifies the document's text: importing the same document again adds nothing."""
        return hashlib.sha256(("\x00".join((self.title, *self.passages))).encode("utf-8")).hexdigest()


def split_passages(text: str, max_chars: int = MAX_PASSAGE_CHARS) -> list[str]:
    """Paragraphs packed into passages of at most `max_chars` (a longer paragraph is cut at
    sentence ends, then at spaces, then hard), whitespace-collapsed, none empty."""
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        flat = " ".join(paragraph.split())
        if flat:
            pieces.extend(_cut(flat, max_chars))
    passages: list[str] = []
    for piece in pieces:
        if passages and len(passages[-1]) + 1 + len(piece) <= max_chars:
            passages[-1] = f"{passages[-1]}\n{piece}"
        else:
            passages.append(piece)
    return passages


def _cut(text: str, max_chars: int) -> list[str]:
    out: list[str] = []
    while len(text) > max_chars:
        window = text[: max_chars + 1]
        at = max(window.rfind(". "), window.rfind("! "), window.rfind("? "))
        at = at + 1 if at > max_chars // 3 else window.rfind(" ")
        if at <= 0:
            at = max_chars
        out.append(text[:at].strip())
        text = text[at:].strip()
    if text:
        out.append(text)
    return out


def parse_markdown(text: str, source: str) -> ReferenceDoc:
    """A Markdown file: its first `# heading` is the title (else the file name)."""
    match = re.search(r"^\s{0,3}#\s+(.+?)\s*#*\s*$", text, flags=re.MULTILINE)
    title = match.group(1) if match else Path(source).stem
    return _doc(title, None, source, text, source)


def parse_plain(text: str, source: str) -> ReferenceDoc:
    """A plain-text file: titled by its file name."""
    return _doc(Path(source).stem, None, source, text, source)


def parse_jsonl(text: str, source: str) -> list[ReferenceDoc]:
    """One document per line: `{"title": ..., "text": ..., "url": optional}`."""
    docs = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}: line {line_no}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise UserError(f'{where}: expected an object with "title" and "text"')
        title, body, url = obj.get("title"), obj.get("text"), obj.get("url")
        if not isinstance(title, str) or not title.strip():
            raise UserError(f'{where}: "title" must be a non-empty string')
        if not isinstance(body, str):
            raise UserError(f'{where}: "text" must be a string')
        if url is not None and not isinstance(url, str):
            raise UserError(f'{where}: "url" must be a string when given')
        docs.append(_doc(title, url, source, body, where))
    if not docs:
        raise UserError(f"{source}: no documents (expected one JSON object per line)")
    return docs


def _doc(title: str, url: str | None, source: str, body: str, where: str) -> ReferenceDoc:
    title = " ".join(nfc(title).split())
    if not title or len(title) > MAX_TITLE_CHARS:
        raise UserError(f"{where}: a title must be 1 to {MAX_TITLE_CHARS} characters")
    if url is not None:
        url = url.strip() or None
        if url is not None and (len(url) > MAX_URL_CHARS or not re.match(r"^https?://\S+$", url)):
            raise UserError(f'{where}: "url" must be an http(s) address of at most {MAX_URL_CHARS} characters')
    passages = split_passages(nfc(body))
    if not passages:
        raise UserError(f"{where}: the document has no text")
    return ReferenceDoc(title, url, Path(source).name, tuple(passages))


def parse_reference_text(text: str, source: str) -> list[ReferenceDoc]:
    """One file's documents, by its suffix."""
    suffix = Path(source).suffix.lower()
    if "\x00" in text:
        raise UserError(f"{source}: not a text file")
    if suffix == ".jsonl":
        return parse_jsonl(text, source)
    if suffix in (".md", ".markdown"):
        return [parse_markdown(text, source)]
    if suffix == ".txt":
        return [parse_plain(text, source)]
    raise UserError(f"{source}: reference files must be {', '.join(SUFFIXES)}")


def read_references(path: str | os.PathLike | ServerPath) -> list[ReferenceDoc]:
    """Every document of a file, or of the reference files in a folder (sorted by name).

    A path typed into the app (`ServerPath`) is confined to the import root first, as imports
    are; the total size is held to the import size limit."""
    real = confine_to_import_root(path.typed) if isinstance(path, ServerPath) else Path(path)
    if not real.exists():
        raise UserError(f"{real.name}: no such file or folder")
    files = [real] if real.is_file() else sorted(p for p in real.rglob("*") if p.suffix.lower() in SUFFIXES)
    files = [p for p in files if p.is_file()]
    if not files:
        raise UserError(f"{real.name}: no reference files ({', '.join(SUFFIXES)})")
    limit = max_import_mb() * 1024 * 1024
    if sum(p.stat().st_size for p in files) > limit:
        raise UserError(f"{real.name}: larger than the import limit of {max_import_mb():g} MB")
    docs: list[ReferenceDoc] = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{file.name}: not UTF-8 text") from None
        docs.extend(parse_reference_text(text, file.name))
    return docs


def query_words(text: str, max_terms: int = 32) -> list[str]:
    """The words of a search: letters and digits only, so no search syntax (and no NUL) survives."""
    return re.findall(r"\w+", nfc(text))[:max_terms]


def fts_query(text: str, max_terms: int = 32) -> str:
    """User text as a safe SQLite FTS5 query: each word a quoted string (no operators, columns
    or prefixes survive), joined by `AND`; "" when there is no word."""
    return " AND ".join('"' + w.replace('"', '""') + '"' for w in query_words(text, max_terms))


def entity_queries(answer: str, limit: int = 12) -> list[str]:
    """What to look up for an answer: runs of capitalised words, and numbers with their
    neighbouring word, in order of appearance, without repeats. A cheap stand-in for the
    entities the judge will check; retrieval ranks the passages."""
    found: list[str] = []
    pattern = r"(?:[A-Z][\w'\-]*(?:\s+(?:of|de|von|van|the|and)?\s*[A-Z][\w'\-]*)*)|(?:\w+\s+)?\d[\d.,]*"
    for match in re.finditer(pattern, nfc(answer)):
        phrase = " ".join(match.group(0).split())
        if len(phrase) >= 3 and phrase.lower() not in {q.lower() for q in found}:
            found.append(phrase)
        if len(found) >= limit:
            break
    return found
