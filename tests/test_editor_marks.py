"""What the span editor trims from a selection and how it marks tokens, Python against JS.

- Punctuation trimmed at the ends of a token-snapped selection: core.text.editing's
  `is_edge_punctuation` and spans.js's `isEdgePunct`, loaded on its own, agree on every
  character Python's Unicode database knows (random selections are compared in
  tests/test_components.py).
"""
from __future__ import annotations

import sys
import unicodedata

import pytest

from core.text.editing import is_edge_punctuation
from tests.support.js_eval import js_runner


@pytest.fixture(scope="module")
def js_eval():
    with js_runner() as run:
        yield run


def test_js_edge_punctuation_is_python_edge_punctuation(js_eval):
    # every BMP character but surrogates, and the astral ones Python's Unicode assigns (JS may
    # know a newer Unicode: characters new since then are not compared)
    chars = [chr(c) for c in range(sys.maxunicode + 1)
             if not 0xD800 <= c <= 0xDFFF and (c < 0x10000 or unicodedata.category(chr(c)) != "Cn")]
    js = js_eval("spans.js", "(P, s) => Array.from(s).map(c => (P.isEdgePunct(c) ? '1' : '0')).join('')",
                 "".join(chars))
    assert len(js) == len(chars)
    new_in_js = [hex(ord(c)) for c, j in zip(chars, js) if unicodedata.category(c) == "Cn" and j == "1"]
    diff = [hex(ord(c)) for c, j in zip(chars, js)
            if unicodedata.category(c) != "Cn" and is_edge_punctuation(c) != (j == "1")]
    assert diff == []
    assert len(new_in_js) < 20, new_in_js  # only characters assigned after Python's Unicode version
    assert sum(map(is_edge_punctuation, chars)) > 500
    assert not any(map(is_edge_punctuation, "%‰#@&-°$+a1 \n"))
    assert all(map(is_edge_punctuation, ".,;:!?…'\"«»“”‘’()[]{}—–。、「」"))
