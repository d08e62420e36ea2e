"""The LLM judge's side of the conversation, pure: the instructions, the messages, the JSON
schema of its answer, and the defensive reading of that answer into spans of the text.

The judge names each span by its exact text and its occurrence (0 = the first time the text
appears); the spans are then placed exactly like an import's paper-schema spans
(`core.text.tokens.resolve_annotations_detail`: by index, else text search after the previous
span). Anything that cannot be read or placed is a `JudgeOutputError` whose message is what
the judge is told on its one retry.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.base.errors import UserError
from core.base.types import NOT_APPLICABLE, Span
from core.text.tokens import UnmatchedSpan, canonical_label, nfc, resolve_annotations_detail

JUDGE_LABELS = ("Supported", "Not Supported", "Insufficient Information")
MAX_SPANS = 200  # spans a judge's answer may hold when read (a judge may ignore the schema)

DEFAULT_INSTRUCTIONS = """You label the entities in an assistant's long answer, as a careful fact-checker.

Find every entity the answer states as a fact: names of people, organisations and works, places,
dates, numbers and quantities, citations. For each, decide with the evidence passages (and, when
no passage bears on it, your own knowledge):
- "Supported": the evidence (or well-established knowledge) confirms it;
- "Not Supported": it is false, or contradicted by the evidence;
- "Insufficient Information": it cannot be checked either way.

Copy each span's text exactly as it appears in the answer (same characters, same case), and say
which occurrence it is (0 for the first time that text appears in the answer, 1 for the second,
...). Keep spans short (the entity itself) and never overlapping. In "note" say briefly why; in
"evidence" list the ids of the passages you used (empty when none)."""

# The bounds of the schema the judge is asked to follow. Every string and array is bounded, so
# a document of the schema has a longest form (`longest_output`) and the request's
# `max_tokens` can always hold it: a weak model's string cannot run on until the token limit
# cuts it. Strings are bounded by `pattern` (OpenAI's strict mode takes `pattern` and
# `minItems`/`maxItems`, and lists no `maxLength`); the patterns leave out the characters JSON
# must escape, so each character of a string is one character of the answer.
SCHEMA_SPANS = 16  # spans in one answer
SCHEMA_SPAN_CHARS = 56  # characters of a span's text
SCHEMA_NOTE_CHARS = 80  # characters of a note
SCHEMA_CITED = 2  # passage ids one span cites
SCHEMA_OCCURRENCE = 99  # the highest occurrence index
PASSAGE_ID_MAX = 2**31 - 1  # passage ids are 32-bit integers in the database
_PLAIN = r'[^"\\\x00-\x1f]'  # a character JSON writes as itself (no quote, backslash, control)


def bounded_text(low: int, high: int) -> dict[str, Any]:
    """A string of `low` to `high` characters that JSON writes unescaped, as a strict-mode pattern."""
    return {"type": "string", "pattern": f"^{_PLAIN}{{{low},{high}}}$"}


OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spans": {
            "type": "array",
            "maxItems": SCHEMA_SPANS,
            "items": {
                "type": "object",
                "properties": {
                    "text": bounded_text(1, SCHEMA_SPAN_CHARS),
                    "occurrence": {"type": "integer", "minimum": 0, "maximum": SCHEMA_OCCURRENCE},
                    "label": {"type": "string", "enum": list(JUDGE_LABELS)},
                    "note": bounded_text(0, SCHEMA_NOTE_CHARS),
                    "evidence": {
                        "type": "array",
                        "maxItems": SCHEMA_CITED,
                        "items": {"type": "integer", "minimum": 0, "maximum": PASSAGE_ID_MAX},
                    },
                },
                "required": ["text", "occurrence", "label", "note", "evidence"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["spans"],
    "additionalProperties": False,
}

RESPONSE_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {"name": "entity_labels", "strict": True, "schema": OUTPUT_SCHEMA},
}


def longest_output() -> str:
    """The longest document of OUTPUT_SCHEMA, written with the fixed whitespace of our serve
    (`", "` and `": "`, as `core.engine.json_output` enforces)."""
    span = {
        "text": "x" * SCHEMA_SPAN_CHARS,
        "occurrence": SCHEMA_OCCURRENCE,
        "label": max(JUDGE_LABELS, key=len),
        "note": "x" * SCHEMA_NOTE_CHARS,
        "evidence": [PASSAGE_ID_MAX] * SCHEMA_CITED,
    }
    return json.dumps({"spans": [span] * SCHEMA_SPANS}, separators=(", ", ": "))


def output_token_limit() -> int:
    """The `max_tokens` every judge request carries: the longest document's characters, plus one
    for the end-of-answer token. No token of ASCII text is shorter than a character, so it always
    holds an ASCII answer; text in other scripts takes fewer tokens than characters in practice,
    and a reply cut at the limit is one the judge is asked again."""
    return len(longest_output()) + 1


class JudgeOutputError(ValueError):
    """The judge's answer cannot be used; the message says why (and is shown to it on a retry).
    `unmatched`: the spans that could not be placed in the answer, reported on the run."""

    def __init__(self, message: str, unmatched: list[UnmatchedSpan] | None = None) -> None:
        super().__init__(message)
        self.unmatched = unmatched or []


class EvidencePassage(Protocol):
    """A retrieved passage as the judge is shown it (`db.references.PassageHit`)."""

    @property
    def id(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def title(self) -> str: ...


class _JudgeSpan(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: str = Field(min_length=1, max_length=2000)
    occurrence: int = Field(default=0, ge=0)
    label: str
    note: str = Field(default="", max_length=4000)
    evidence: list[int] = Field(default_factory=list, max_length=50)


class _JudgeOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    spans: list[_JudgeSpan] = Field(max_length=MAX_SPANS)


@dataclass(frozen=True)
class Judged:
    """What one judge answer says about the text: placed spans (with notes) and the passage ids
    each cites (by span start)."""

    spans: list[Span]
    evidence: dict[int, list[int]]


def system_message(instructions: str, guidelines: str | None) -> str:
    """The instructions, then the team's own guidelines, so the judge follows the people's rules."""
    parts = [instructions.strip()]
    if guidelines and guidelines.strip():
        parts.append("## The team's annotation guidelines (follow them)\n\n" + guidelines.strip())
    parts.append(
        'Answer with JSON only: {"spans": [{"text", "occurrence", "label", "note", "evidence"}]}. '
        f"At most {SCHEMA_SPANS} spans (the most important entities first), each text at most "
        f"{SCHEMA_SPAN_CHARS} characters, each note at most {SCHEMA_NOTE_CHARS}, at most {SCHEMA_CITED} "
        "evidence ids per span; no double quotes, backslashes or line breaks inside text or note."
    )
    return "\n\n".join(parts)


def user_message(question: str | None, answer: str, passages: Sequence[EvidencePassage]) -> str:
    lines = []
    if question:
        lines += ["QUESTION:", question.strip(), ""]
    lines += ["ANSWER TO LABEL:", answer, ""]
    if passages:
        lines.append("EVIDENCE PASSAGES (cite them by id):")
        lines += [f"[{p.id}] {p.title}: {p.text}" for p in passages]
    else:
        lines.append("No reference passages were found: judge with your own knowledge, and cite no evidence.")
    return "\n".join(lines)


def build_messages(
    instructions: str, guidelines: str | None, question: str | None, answer: str, passages: Sequence[EvidencePassage]
) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": system_message(instructions, guidelines)},
        {"role": "user", "content": user_message(question, answer, passages)},
    ]


def retry_message(error: str) -> dict[str, str]:
    """What the judge is told after an answer that could not be used (its one retry)."""
    return {
        "role": "user",
        "content": f"Your answer could not be used: {error}\n"
        "Answer again with JSON only, following the schema; copy each span's text exactly from the answer.",
    }


def context_hash(model: str, messages: list[dict[str, str]]) -> str:
    """The cache key's evidence part: everything the judge is shown (guidelines, answer, passages)
    and the model asked. The instructions' version is a key of its own."""
    payload = json.dumps({"model": model, "messages": messages[1:], "system": messages[0]["content"]}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _json_text(raw: str) -> str:
    """The JSON inside an answer, tolerating a ```json fence or words around one object."""
    text = raw.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, flags=re.DOTALL)
    if fenced:
        text = fenced.group(1).strip()
    if not text.startswith("{") and "{" in text:
        text = text[text.index("{") : text.rindex("}") + 1] if "}" in text else text
    return text


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "the answer"
    return f"{where}: {first.get('msg', 'invalid')}"


def _occurrence_index(text: str, needle: str, occurrence: int) -> int | None:
    """Where the `occurrence`-th appearance of `needle` starts (None when there are fewer)."""
    start = -1
    for _ in range(occurrence + 1):
        start = text.find(needle, start + 1)
        if start < 0:
            return None
    return start


def parse_output(raw: str | None, answer: str, passage_ids: set[int]) -> Judged:
    """The judge's answer as spans of `answer` (NFC code points); raises JudgeOutputError when it
    is not the schema's JSON, names an unknown label, or has a span that cannot be placed or
    overlaps another. Cited ids that were not given are dropped."""
    if not raw or not raw.strip():
        raise JudgeOutputError("the answer was empty")
    try:
        output = _JudgeOutput.model_validate_json(_json_text(raw))
    except ValidationError as exc:
        raise JudgeOutputError(f"not the expected JSON ({_first_error(exc)})") from None
    text = nfc(answer)
    annotations, cited = [], []
    for item in output.spans:
        try:
            label = canonical_label(item.label)
        except UserError as exc:
            raise JudgeOutputError(str(exc)) from None
        if label == NOT_APPLICABLE:
            continue
        span_text = nfc(item.text)
        annotations.append(
            {
                "span": span_text,
                "index": _occurrence_index(text, span_text, item.occurrence),
                "label": label,
                "verification_note": item.note.strip() or None,
            }
        )
        cited.append([i for i in dict.fromkeys(item.evidence) if i in passage_ids])
    resolution = resolve_annotations_detail(text, annotations)
    if resolution.unmatched:
        missing = "; ".join(f"{u.text[:60]!r} ({u.reason})" for u in resolution.unmatched[:5])
        raise JudgeOutputError(
            f"{len(resolution.unmatched)} span(s) not found in the answer: {missing}", resolution.unmatched
        )
    placed: list[tuple[Span, list[int]]] = []
    for span, ids in sorted(zip(resolution.spans, cited), key=lambda pair: (pair[0].start, pair[0].end)):
        if placed and (placed[-1][0].start, placed[-1][0].end, placed[-1][0].label) == (
            span.start,
            span.end,
            span.label,
        ):
            continue  # the same span twice
        if placed and span.start < placed[-1][0].end:
            before = placed[-1][0]
            raise JudgeOutputError(
                f"spans {text[before.start : before.end]!r} and {text[span.start : span.end]!r} overlap"
            )
        placed.append((span, ids))
    return Judged([span for span, _ in placed], {span.start: ids for span, ids in placed if ids})
