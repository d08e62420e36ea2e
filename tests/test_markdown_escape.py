"""md_escape: what a hostile name, question or dataset name may not do once rendered as markdown."""

from __future__ import annotations

import re

import pytest

from core.text.markdown import md_escape

ATTACKS = [
    "![x](http://127.0.0.1:9/t.png)",
    "[click](http://127.0.0.1:9/)",
    "http://127.0.0.1:9/bare-autolink",
    "www.example.com",
    ":red[alarm] :material/warning: :smile:",
    "$\\frac{1}{0}$",
    "# heading\n- item\n1. item\n> quote\n```code```",
    "<img src=x onerror=alert(1)>",
    "**bold** _it_ ~~gone~~ `code` | table |",
]


@pytest.mark.parametrize("text", ATTACKS)
def test_every_markdown_character_is_escaped(text):
    out = md_escape(text)
    # no unescaped ASCII punctuation is left: each is preceded by a backslash
    assert not re.search(r"(?<!\\)[!\"#$%&'()*+,\-./:;<=>?@\[\]^_`{|}~]", out.replace("\\\\", ""))
    assert "\n" not in out


def test_the_text_reads_the_same_once_unescaped():
    text = "Bosnia & Herzegovina: 51,197 km² (≈ 19,767 mi²) — ok? see http://x.org or a@b.org"
    assert re.sub(r"\\(.)", r"\1", md_escape(text)).replace("\u200b", "") == text


def test_url_schemes_www_and_at_are_broken_for_the_autolinker():
    out = re.sub(r"\\(.)", r"\1", md_escape("http://a.b www.c.d e@f.g HTTPS://h"))
    assert "http://" not in out and "www." not in out and "e@f" not in out and "HTTPS://" not in out


def test_block_text_keeps_its_lines_as_hard_breaks():
    assert md_escape("one\ntwo", inline=False) == "one  \ntwo"
    assert md_escape("one\r\ntwo") == "one two"
    assert md_escape(None) == ""
