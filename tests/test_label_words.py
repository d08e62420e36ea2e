"""One vocabulary for labels (issue #25, friction 7): the words everywhere people read labels,
both names where a file's paper names are shown."""

from __future__ import annotations

import json
import re
from pathlib import Path

from core.base.types import LABEL_WORDS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_a_label_reads_as_its_word_and_with_both_names_where_files_need_the_papers():
    from core.text.readable import label_both, label_word

    assert [label_word(x) for x in ("Not Supported", "insufficient information", "supported", "N/A")] == [
        "hallucinated",
        "unverifiable",
        "supported",
        "ignore",
    ]
    assert label_both("not supported") == "hallucinated (Not Supported)"
    assert label_word("hallucinated") == "hallucinated"  # the word itself is accepted too


def test_the_import_preview_shows_a_files_labels_by_both_names():
    from core.orchestration.imports import preview_import

    record = {
        "conversation": [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "Lviv, 1256."}],
        "annotations": [{"span": "1256", "index": 6, "label": "Insufficient Information"}],
    }
    preview = preview_import((json.dumps(record) + "\n").encode(), "x.jsonl", split="train")
    assert preview.rows[0]["spans"][0]["label"] == "unverifiable (Insufficient Information)"


def test_the_manual_names_the_labels_by_their_words_and_keys_as_the_editor_does():
    legend = re.search(r"\*\*1\*\* (\w+), \*\*2\*\* (\w+), \*\*3\*\* (\w+),\s+\*\*0\*\* (\w+)", README)
    assert legend is not None and list(legend.groups()) == list(LABEL_WORDS.values())
    for name, word in LABEL_WORDS.items():
        assert f"| {word} | `{name}` |" in README  # the vocabulary table: word and paper name side by side
