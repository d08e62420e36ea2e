"""The JSONL interchange format (core/interchange.py)."""

from __future__ import annotations

import json
import math
import os
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.base.errors import UserError
from core.base.types import Generation, Span, TokenTrace
from core.text.interchange import (
    PromptItem,
    generation_to_record,
    parse_record,
    read_generations,
    read_generations_text,
    read_prompts,
    trace_from_record,
    write_jsonl,
)
from core.text.tokens import nfc

ANSWER = "Lviv was called Lemberg. Later Lemberg became Lwów."


def _record(**over):
    rec = {
        "id": "g1",
        "conversation": [{"role": "user", "content": "Tell me about Lviv."}, {"role": "assistant", "content": ANSWER}],
        "annotations": [{"span": "Lemberg", "index": 16, "label": "Not Supported", "verification_note": "n"}],
    }
    rec.update(over)
    return rec


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- parse_record -------------------------------------------------------------------------


def test_parse_paper_record():
    gen, unmatched, by_index, by_search = parse_record(_record(extra_key={"a": 1}), 1)
    assert gen.id == "g1" and gen.model is None
    assert gen.completion == ANSWER
    assert gen.spans == [Span(16, 23, "Not Supported", "n")]
    assert gen.extra == {"extra_key": {"a": 1}}
    assert (unmatched, by_index, by_search) == ([], 1, 0)


def test_parse_native_spans_and_dedupe_with_annotations():
    rec = _record(
        spans=[
            {"start": 16, "end": 23, "label": "not supported"},
            {"start": 0, "end": 4, "label": "ignore", "note": "x"},
        ]
    )
    gen, _, by_index, _ = parse_record(rec, 1)
    assert gen.spans == [Span(16, 23, "Not Supported", "n"), Span(0, 4, "N/A", "x")]
    assert by_index == 3


def test_parse_nfc_normalises_conversation_and_spans_count_on_nfc():
    decomposed = "Cafe\u0301 in Zu\u0308rich"
    rec = _record(
        conversation=[{"role": "user", "content": "Cafe\u0301?"}, {"role": "assistant", "content": decomposed}],
        annotations=[{"span": "Zu\u0308rich", "label": "Supported"}],
    )
    gen, _, by_index, by_search = parse_record(rec, 1)
    assert gen.completion == nfc(decomposed) and gen.conversation[0]["content"] == "Caf\u00e9?"
    assert gen.spans == [Span(8, 14, "Supported")]
    assert (by_index, by_search) == (0, 1)


def test_parse_reports_unmatched_annotation():
    rec = _record(annotations=[{"span": "Paris", "index": 3, "label": "Not Supported"}])
    gen, unmatched, _, _ = parse_record(rec, 1)
    assert gen.spans == [] and unmatched[0].text == "Paris"


def test_integer_id_is_stringified():
    gen, *_ = parse_record(_record(id=7), 1)
    assert gen.id == "7"


@pytest.mark.parametrize(
    "rec, message",
    [
        ([1, 2], "line 3: expected a JSON object, got a list"),
        (_record(conversation="hi"), 'line 3: "conversation" must be a list of {role, content} messages'),
        (_record(conversation=[]), 'line 3: "conversation" must be a list'),
        (_record(conversation=[{"role": "user"}]), 'line 3: "conversation" must be a list'),
        (
            _record(conversation=[{"role": "user", "content": "q"}]),
            'line 3: the last message of "conversation" must have role "assistant" (got "user")',
        ),
        (_record(annotations={"span": "x"}), 'line 3: "annotations" must be a list'),
        (_record(annotations=[{"span": "Lviv", "label": "Maybe"}]), "line 3: unknown label 'Maybe' (expected one of"),
        (_record(annotations=[{"span": None, "label": "Supported"}]), 'line 3: annotation 1: "span" must be a string'),
        (_record(spans=[{"start": 5, "end": 5, "label": "Supported"}]), "line 3: span 1: need 0 <= start < end <= 51"),
        (_record(spans=[{"start": -1, "end": 2, "label": "Supported"}]), "line 3: span 1: need 0 <= start"),
        (_record(spans=[{"start": 0, "end": 52, "label": "Supported"}]), "line 3: span 1: need 0 <= start"),
        (_record(spans=[{"start": 0, "end": "4", "label": "Supported"}]), 'line 3: span 1: "start" and "end"'),
        (_record(spans=[{"start": 0, "end": 4, "label": "??"}]), "line 3: span 1: unknown label '??'"),
        (_record(spans={"start": 0}), 'line 3: "spans" must be a list'),
        (_record(id=1.5), 'line 3: "id" must be a string'),
        (_record(model=3), 'line 3: "model" must be a string'),
        (
            _record(conversation=[{"role": "assistant", "content": "bad \ud800"}], annotations=[]),
            "line 3: text contains an unpaired surrogate",
        ),
    ],
)
def test_parse_errors_name_the_line(rec, message):
    with pytest.raises(UserError) as err:
        parse_record(rec, 3)
    assert str(err.value).startswith(message)


# --- read_generations ----------------------------------------------------------------------


def test_read_generations_skips_blank_lines_and_collects_report(tmp_path):
    bad_ann = _record(
        id="g2", annotations=[{"span": "Paris", "label": "Supported"}, {"span": "Lwów", "label": "Supported"}]
    )
    path = _write_lines(
        tmp_path / "g.jsonl", [json.dumps(_record()), "", "   ", json.dumps(bad_ann, ensure_ascii=False)]
    )
    report = read_generations(path)
    assert [g.id for g in report.generations] == ["g1", "g2"]
    assert [(n, u.text) for n, u in report.unmatched] == [(4, "Paris")]
    assert (report.by_index, report.by_search) == (1, 1)


def test_read_accepts_bom_crlf_and_u2028_inside_strings(tmp_path):
    rec = _record(annotations=[])
    rec["conversation"][1]["content"] = "line\u2028sep"
    path = tmp_path / "g.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(rec, ensure_ascii=False).encode("utf-8") + b"\r\n")
    report = read_generations(path)
    assert report.generations[0].completion == "line\u2028sep"


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(UserError, match=f"^no such file: {missing}$"):
        read_generations(missing)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(UserError, match="not a file"):
        read_generations(tmp_path)


def test_bad_json_names_path_and_line(tmp_path):
    path = _write_lines(tmp_path / "g.jsonl", [json.dumps(_record()), "", '{"conversation": [}'])
    with pytest.raises(UserError) as err:
        read_generations(path)
    assert str(err.value).startswith(f"{path} line 3: invalid JSON (")


def test_empty_file(tmp_path):
    path = _write_lines(tmp_path / "g.jsonl", ["", "  "])
    with pytest.raises(UserError, match=f"^{path}: no generations found$"):
        read_generations(path)


def test_missing_assistant_names_line(tmp_path):
    no_answer = _record(conversation=[{"role": "user", "content": "q"}])
    path = _write_lines(tmp_path / "g.jsonl", [json.dumps(_record()), json.dumps(no_answer)])
    with pytest.raises(UserError, match=r'line 2: the last message of "conversation" must have role "assistant"'):
        read_generations(path)


def test_bad_span_names_line(tmp_path):
    bad = _record(spans=[{"start": 40, "end": 99, "label": "Supported"}])
    path = _write_lines(tmp_path / "g.jsonl", [json.dumps(_record()), json.dumps(_record()), json.dumps(bad)])
    with pytest.raises(UserError, match=r"line 3: span 1: need 0 <= start < end <= 51 \(got start=40, end=99\)"):
        read_generations(path)


def test_not_utf8(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_bytes(b'{"a": "\xff"}\n')
    with pytest.raises(UserError, match="not UTF-8"):
        read_generations(path)


def test_read_generations_text_uses_source_prefix():
    with pytest.raises(UserError, match="^upload.jsonl line 1: invalid JSON"):
        read_generations_text("{oops\n", "upload.jsonl")
    report = read_generations_text(json.dumps(_record()), "upload.jsonl")
    assert len(report.generations) == 1


# --- read_prompts --------------------------------------------------------------------------


def test_read_prompts_txt(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("What is Lviv?\n\n  Who was Marie Curie? \n", encoding="utf-8")
    assert read_prompts(path) == [
        PromptItem(None, [{"role": "user", "content": "What is Lviv?"}]),
        PromptItem(None, [{"role": "user", "content": "Who was Marie Curie?"}]),
    ]


def test_read_prompts_jsonl(tmp_path):
    conv = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Lviv?"},
        {"role": "assistant", "content": "A city."},
    ]
    path = _write_lines(
        tmp_path / "p.jsonl", [json.dumps({"prompt": "Cafe\u0301?", "id": "p1"}), json.dumps({"conversation": conv})]
    )
    items = read_prompts(path)
    assert items[0] == PromptItem("p1", [{"role": "user", "content": "Caf\u00e9?"}])
    assert items[1] == PromptItem(None, conv[:4])


@pytest.mark.parametrize(
    "line, message",
    [
        ("[1]", "line 2: expected a JSON object"),
        ('{"prompt": ""}', 'line 2: "prompt" must be a non-empty string'),
        ('{"prompt": 5}', 'line 2: "prompt" must be a non-empty string'),
        ('{"conversation": [{"role": "system", "content": "x"}]}', 'line 2: "conversation" has no user message'),
        ('{"prompt": "  \\n "}', 'line 2: "prompt" must be a non-empty string'),
        (
            '{"conversation": [{"role": "user", "content": " "}]}',
            'line 2: the last user message of "conversation" is empty',
        ),
        ('{"text": "x"}', 'line 2: expected a "prompt" string or a "conversation" list'),
        ('{"prompt": "x"', "line 2: invalid JSON"),
    ],
)
def test_read_prompts_errors(tmp_path, line, message):
    path = _write_lines(tmp_path / "p.jsonl", ['{"prompt": "ok"}', line])
    with pytest.raises(UserError) as err:
        read_prompts(path)
    assert str(err.value).startswith(f"{path} {message}")


def test_read_prompts_empty_and_missing(tmp_path):
    path = _write_lines(tmp_path / "p.txt", ["", " "])
    with pytest.raises(UserError, match="no prompts found"):
        read_prompts(path)
    with pytest.raises(UserError, match="no such file"):
        read_prompts(tmp_path / "missing.txt")


# --- writing and round trips ----------------------------------------------------------------


def test_generation_to_record_shape():
    gen = Generation(
        conversation=[{"role": "user", "content": "q"}, {"role": "assistant", "content": ANSWER}],
        spans=[Span(16, 23, "Not Supported", "wrong"), Span(0, 4, "Supported")],
        model="m",
        extra={"finish_reason": "stop", "conversation": "must not override"},
    )
    rec = generation_to_record(gen)
    assert list(rec) == ["model", "conversation", "annotations", "finish_reason"]
    assert rec["annotations"] == [
        {"span": "Lemberg", "index": 16, "label": "Not Supported", "verification_note": "wrong"},
        {"span": "Lviv", "index": 0, "label": "Supported"},
    ]


def test_generation_to_record_rejects_out_of_range_span():
    gen = Generation([{"role": "assistant", "content": "abc"}], [Span(2, 9, "Supported")])
    with pytest.raises(ValueError):
        generation_to_record(gen)


def test_write_jsonl_is_utf8_atomic_and_readable(tmp_path):
    path = tmp_path / "sub" / "out.jsonl"
    gen = Generation(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "😀 Lwów"}],
        [Span(2, 6, "Supported")],
        id="x",
    )
    write_jsonl(path, [generation_to_record(gen)])
    raw = path.read_text(encoding="utf-8")
    assert "😀 Lwów" in raw and raw.endswith("}\n") and raw.count("\n") == 1
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert read_generations(path).generations == [gen]

    def failing():
        yield {"a": 1}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_jsonl(path, failing())
    assert path.read_text(encoding="utf-8") == raw  # old file untouched
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.jsonl"]  # no temp left behind


def test_trace_round_trip(tmp_path):
    gen = Generation([{"role": "user", "content": "q"}, {"role": "assistant", "content": "Hi 😀"}])
    trace = TokenTrace(
        [5, 6, 7, 8],
        ["Hi", " ", "", "😀"],
        [(0, 2), (2, 3), (3, 4), (3, 4)],
        [-0.1, -0.2, float("nan"), -0.4],
        [0.5, 0.6, 0.7, 0.8],
        [0.1, 0.2, 0.3, 0.4],
    )
    rec = generation_to_record(gen, trace)
    assert rec["tokens"]["logprobs"][2] is None  # NaN becomes null: valid JSON for browsers
    write_jsonl(tmp_path / "t.jsonl", [rec])
    obj = json.loads((tmp_path / "t.jsonl").read_text(encoding="utf-8"))
    back = trace_from_record(obj)
    assert back.token_ids == trace.token_ids and back.texts == trace.texts and back.offsets == trace.offsets
    assert back.scores == trace.scores and back.entropies == trace.entropies
    assert math.isnan(back.logprobs[2]) and back.logprobs[:2] == [-0.1, -0.2]
    # "tokens" stays in extra, so a plain re-write keeps it
    read_back = read_generations(tmp_path / "t.jsonl").generations[0]
    assert generation_to_record(read_back)["tokens"] == rec["tokens"]


def test_trace_from_record_without_texts_or_scores_and_errors():
    obj = {
        "conversation": [{"role": "assistant", "content": "Hi 😀"}],
        "tokens": {"ids": [1, 2], "offsets": [[0, 2], [2, 4]], "logprobs": [0, 0], "entropies": [1, 1]},
    }
    trace = trace_from_record(obj)
    assert trace.texts == ["Hi", " 😀"] and trace.scores is None
    assert trace_from_record({"conversation": []}) is None
    obj["tokens"]["logprobs"] = [0]
    with pytest.raises(UserError, match='line 4: "tokens" is malformed'):
        trace_from_record(obj, 4)


_TEXT = st.lists(
    st.one_of(
        st.sampled_from(["Lviv", " ", "\n", "😀", "東京", "e\u0301", "Lemberg"]),
        st.characters(blacklist_categories=("Cs",)),
    ),
    min_size=1,
    max_size=30,
).map(lambda parts: nfc("".join(parts)))
_LABELS = st.sampled_from(["Not Supported", "Insufficient Information", "Supported", "N/A"])


@st.composite
def _generations(draw):
    text = draw(_TEXT)
    spans = []
    for _ in range(draw(st.integers(0, 4))):
        a = draw(st.integers(0, len(text) - 1))
        b = draw(st.integers(a + 1, len(text)))
        note = draw(st.one_of(st.none(), st.text(min_size=1, max_size=5)))
        spans.append(Span(a, b, draw(_LABELS), note))
    unique = list({(s.start, s.end, s.label): s for s in spans}.values())  # exact repeats are deduped on read
    return Generation(
        conversation=[{"role": "user", "content": draw(_TEXT)}, {"role": "assistant", "content": text}],
        spans=unique,
        id=draw(st.one_of(st.none(), st.text(max_size=5))),
        model=draw(st.one_of(st.none(), st.just("tiny"))),
        extra=draw(st.dictionaries(st.sampled_from(["finish_reason", "meta"]), st.integers() | st.text(max_size=3))),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gens=st.lists(_generations(), min_size=1, max_size=3))
def test_write_read_round_trip(tmp_path, gens):
    path = tmp_path / "rt.jsonl"
    write_jsonl(path, [generation_to_record(g) for g in gens])
    report = read_generations(path)
    assert report.generations == gens
    assert report.unmatched == [] and report.by_search == 0
    assert report.by_index == sum(len(g.spans) for g in gens)
