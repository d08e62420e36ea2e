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
