"""The one escape for text that a user or the model wrote, before Streamlit renders markdown.

Streamlit renders markdown in st.markdown/st.write/captions/titles, in widget labels and in
radio options, button and page-link labels: text written by another user could otherwise
load an external image (`![x](http://...)`: a request from every reader's browser), plant a
link, or restyle the page (`:red[...]`, `$...$`). Every ASCII punctuation character is
backslash-escaped (CommonMark renders each as itself). Streamlit's GFM autolinks are found in
the *rendered* text, where escapes are gone, so a zero-width space after a URL scheme, `www`
and `@` breaks them (seen in Chromium: `http\\://` alone still became a link). Raw HTML is
never enabled anywhere, so `<` needs nothing more.
"""

from __future__ import annotations

import re
import string

_SPECIAL = frozenset(string.punctuation)
_ZWSP = "\u200b"
_AUTOLINK_START = re.compile(r"(?i)(https?|ftp|mailto|xmpp|www)(?=[:.])|@")


def md_escape(text: object, *, inline: bool = True) -> str:
    """`text` as literal characters in markdown. `inline`: one line (labels, options, titles);
    otherwise line breaks are kept as hard breaks (a chat bubble, a note)."""
    value = "" if text is None else str(text)
    value = _AUTOLINK_START.sub(lambda m: m.group(0) + _ZWSP, value)
    escaped = "".join("\\" + c if c in _SPECIAL else c for c in value)
    lines = escaped.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if inline:
        return " ".join(lines)
    return "  \n".join(lines)


# A whole inline image `![alt](destination "title")`: alt may hold escapes and one level of
# brackets; the destination is `<...>` or a run without spaces (balanced parentheses one level
# deep); an optional quoted or parenthesised title; the closing parenthesis.
_INLINE_IMAGE = re.compile(
    r"!\[(?:[^\[\]\\]|\\.|\[(?:[^\[\]\\]|\\.)*\])*\]"
    r"\(\s*(?P<dest><[^<>\n]*>|(?:[^\s()\\]|\\.|\((?:[^\s()\\]|\\.)*\))*)"
    r"(?:\s+(?:\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|\((?:[^()\\]|\\.)*\)))?\s*\)"
)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:")


def _from_the_app(destination: str) -> bool:
    """A path on the app's own origin: no scheme and not `//host`, read the way the browser
    will: markdown escapes undone, tabs and line breaks dropped, the ends stripped of control
    characters and spaces, backslashes as slashes. Entities (`&#58;`) are refused outright."""
    if destination.startswith("<") and destination.endswith(">"):
        destination = destination[1:-1]
    target = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", destination)
    target = re.sub(r"[\t\n\r]", "", target).strip("".join(map(chr, range(33)))).replace("\\", "/")
    return not _SCHEME.match(target) and not target.startswith("//") and "&" not in target


def app_images_only(markdown: str) -> str:
    """An admin's markdown (the guidelines) with every image that would load from another
    host turned into a link: a remote image loads in every reader's browser (a tracking
    pixel). Inline images whose destination is a path on the app itself stay; anything else
    after `![` (remote, `//host`, reference-style `![x][ref]`, or forms this parser does not
    read) gets its `!` escaped, so it renders as a plain link the reader may choose to follow.
    Text without images is returned unchanged."""
    out: list[str] = []
    position = 0
    for found in re.finditer(r"!\[", markdown):
        start = found.start()
        backslashes = len(markdown[:start]) - len(markdown[:start].rstrip("\\"))
        if start < position or backslashes % 2:
            continue  # inside an image already kept, or an escaped `!`
        image = _INLINE_IMAGE.match(markdown, start)
        if image is not None and _from_the_app(image.group("dest")):
            out.append(markdown[position : image.end()])
            position = image.end()
            continue
        out.append(markdown[position:start] + "\\")
        position = start
    out.append(markdown[position:])
    return "".join(out)
