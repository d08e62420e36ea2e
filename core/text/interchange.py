"""The JSONL interchange format: read and write generations and prompts.

One generation per line, compatible with the paper's released datasets
(`conversation` + `annotations`), plus a native form with code-point `spans`.
Every bad line is a UserError naming its line, so the CLI and pages can show one
clear message and change nothing.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from core.base.errors import UserError
from core.base.numbers import finite_or_none
from core.base.types import Generation, Span, TokenTrace
from core.text.tokens import (
    UnmatchedSpan,
    canonical_label,
    nfc,
    resolve_annotations_detail,
)

# Keys this module interprets; every other top-level key is kept in Generation.extra.
_KNOWN_KEYS = ("id", "model", "conversation", "annotations", "spans")
_MESSAGES_HINT = '"conversation" must be a list of {role, content} messages'


@dataclass
class ReadReport:
    """What reading a file produced, including the annotations that could not be placed."""

    generations: list[Generation]
    unmatched: list[tuple[int, UnmatchedSpan]]  # (1-based line number, annotation)
    by_index: int  # spans placed by their index (native spans count here too)
    by_search: int  # spans placed by text search


@dataclass
class PromptItem:
    """One input to `generate`: the messages to answer, with an optional stable id."""

    id: str | None
    messages: list[dict[str, str]]


# --- parsing one record ---------------------------------------------------------------


def parse_record(obj: Any, line_no: int) -> tuple[Generation, list[UnmatchedSpan], int, int]:
    """Turn one decoded JSON line into a Generation; returns (gen, unmatched, by_index, by_search)."""
    where = f"line {line_no}"
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object, got {_json_type(obj)}")
    conversation = _parse_conversation(obj.get("conversation"), where)
    if conversation[-1]["role"] != "assistant":
        role = conversation[-1]["role"]
        raise UserError(f'{where}: the last message of "conversation" must have role "assistant" (got "{role}")')
    text = conversation[-1]["content"]
    spans, unmatched, by_index, by_search = _parse_annotations(obj.get("annotations"), text, where)
    native = _parse_native_spans(obj.get("spans"), text, where)
    spans = _dedupe(spans + native)
    gen = Generation(
        conversation=conversation,
        spans=spans,
        id=_optional_id(obj.get("id"), where),
        model=_optional_str(obj.get("model"), "model", where),
        extra={k: v for k, v in obj.items() if k not in _KNOWN_KEYS},
    )
    return gen, unmatched, by_index + len(native), by_search


def _parse_conversation(value: Any, where: str) -> list[dict[str, str]]:
    """Validate messages and NFC their content (spans are counted on NFC text)."""
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: {_MESSAGES_HINT}")
    messages = []
    for msg in value:
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) or not isinstance(msg.get("content"), str):
            raise UserError(f"{where}: {_MESSAGES_HINT}")
        messages.append({"role": msg["role"], "content": _clean_text(msg["content"], where)})
    return messages


def _clean_text(text: str, where: str) -> str:
    """NFC, and refuse lone surrogates (from JSON escapes) that cannot be written as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"{where}: text contains an unpaired surrogate (invalid Unicode)") from None
    return nfc(text)


def _parse_annotations(value: Any, text: str, where: str) -> tuple[list[Span], list[UnmatchedSpan], int, int]:
    if value is None:
        return [], [], 0, 0
    if not isinstance(value, list):
        raise UserError(f'{where}: "annotations" must be a list of {{span, index, label}} objects')
    try:
        res = resolve_annotations_detail(text, value)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    return res.spans, res.unmatched, res.by_index, res.by_search


def _parse_native_spans(value: Any, text: str, where: str) -> list[Span]:
    """Code-point spans `{start, end, label, note?}`; out-of-range spans are errors, not guesses."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise UserError(f'{where}: "spans" must be a list of {{start, end, label}} objects')
    return [_parse_native_span(item, pos, text, where) for pos, item in enumerate(value)]


def _parse_native_span(item: Any, pos: int, text: str, where: str) -> Span:
    at = f"{where}: span {pos + 1}"
    if not isinstance(item, dict):
        raise UserError(f"{at} must be an object with start, end and label")
    start, end = item.get("start"), item.get("end")
    if not (_is_int(start) and _is_int(end)):
        raise UserError(f'{at}: "start" and "end" must be integers')
    if not 0 <= start < end <= len(text):
        raise UserError(f"{at}: need 0 <= start < end <= {len(text)} (got start={start}, end={end})")
    try:
        label = canonical_label(item.get("label"))
    except UserError as exc:
        raise UserError(f"{at}: {exc}") from None
    note = _optional_str(item.get("note"), "note", at)
    return Span(start, end, label, note or None)


def _dedupe(spans: list[Span]) -> list[Span]:
    """Drop exact repeats (a record may carry the same span as annotation and native span)."""
    seen: set[tuple[int, int, str]] = set()
    out = []
    for span in spans:
        key = (span.start, span.end, span.label)
        if key not in seen:
            seen.add(key)
            out.append(span)
    return out


def _optional_id(value: Any, where: str) -> str | None:
    """Ids are strings; integer ids (common in datasets) are accepted and stringified."""
    if value is None or isinstance(value, str):
        return value
    if _is_int(value):
        return str(value)
    raise UserError(f'{where}: "id" must be a string')


def _optional_str(value: Any, key: str, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise UserError(f'{where}: "{key}" must be a string')


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    names = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


# --- reading files ----------------------------------------------------------------------


def read_generations(path: str | Path) -> ReadReport:
    """Read an interchange JSONL file; any bad line aborts the whole read with its line number."""
    return read_generations_text(_read_text(path), str(path))


def read_generations_text(text: str, source: str) -> ReadReport:
    """Parse interchange JSONL already in memory (uploads); `source` prefixes error messages."""
    report = ReadReport([], [], 0, 0)
    for line_no, obj in _json_lines(text, source):
        try:
            gen, unmatched, by_index, by_search = parse_record(obj, line_no)
        except UserError as exc:
            raise UserError(_prefixed(source, str(exc))) from None
        report.generations.append(gen)
        report.unmatched.extend((line_no, u) for u in unmatched)
        report.by_index += by_index
        report.by_search += by_search
    if not report.generations:
        raise UserError(_prefixed(source, "no generations found", sep=": "))
    return report


def read_prompts(path: str | Path) -> list[PromptItem]:
    """Read prompts: `.txt` is one prompt per non-blank line, anything else is JSONL."""
    path = Path(path)
    text = _read_text(path)
    if path.suffix.lower() == ".txt":
        items = [PromptItem(None, [_user(line.strip())]) for line in _lines(text) if line.strip()]
    else:
        items = [_wrap_prompt(obj, n, str(path)) for n, obj in _json_lines(text, str(path))]
    if not items:
        raise UserError(f"{path}: no prompts found")
    return items


def _wrap_prompt(obj: Any, line_no: int, source: str) -> PromptItem:
    try:
        return parse_prompt(obj, line_no)
    except UserError as exc:
        raise UserError(_prefixed(source, str(exc))) from None


def parse_prompt(obj: Any, line_no: int) -> PromptItem:
    """`{"prompt": str}` or `{"conversation": [...]}` (cut after the last user message)."""
    where = f"line {line_no}"
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object, got {_json_type(obj)}")
    item_id = _optional_id(obj.get("id"), where)
    if "prompt" in obj:
        prompt = obj["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise UserError(f'{where}: "prompt" must be a non-empty string')
        return PromptItem(item_id, [_user(_clean_text(prompt, where))])
    if "conversation" in obj:
        messages = _parse_conversation(obj["conversation"], where)
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]
        if not users:
            raise UserError(f'{where}: "conversation" has no user message to answer')
        if not messages[users[-1]]["content"].strip():
            raise UserError(f'{where}: the last user message of "conversation" is empty')
        return PromptItem(item_id, messages[: users[-1] + 1])
    raise UserError(f'{where}: expected a "prompt" string or a "conversation" list')


def _user(content: str) -> dict[str, str]:
    return {"role": "user", "content": nfc(content)}


def _read_text(path: str | Path) -> str:
    path = Path(path)
    if not path.exists():
        raise UserError(f"no such file: {path}")
    if not path.is_file():
        raise UserError(f"not a file: {path}")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _json_lines(text: str, source: str) -> Iterable[tuple[int, Any]]:
    """Yield (1-based line number, decoded object) for each non-blank line."""
    for line_no, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            yield line_no, json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(
                _prefixed(source, f"line {line_no}: invalid JSON ({exc.msg} at column {exc.colno})")
            ) from None


def _lines(text: str) -> list[str]:
    """Split on newlines only: str.splitlines would also split inside strings at U+2028 etc."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def _prefixed(source: str, message: str, sep: str = " ") -> str:
    return f"{source}{sep}{message}" if source else message


# --- writing ------------------------------------------------------------------------------


def generation_to_record(gen: Generation, trace: TokenTrace | None = None) -> dict:
    """One interchange line; `index` is always written so re-reading never needs a search."""
    text = gen.completion
    record: dict[str, Any] = {}
    if gen.id is not None:
        record["id"] = gen.id
    if gen.model is not None:
        record["model"] = gen.model
    record["conversation"] = [{"role": m["role"], "content": m["content"]} for m in gen.conversation]
    record["annotations"] = [_annotation(span, text) for span in gen.spans]
    record.update({k: v for k, v in gen.extra.items() if k not in _KNOWN_KEYS})
    if trace is not None:
        record["tokens"] = trace_to_record(trace)
    return record


def _annotation(span: Span, text: str) -> dict[str, Any]:
    if not 0 <= span.start < span.end <= len(text):
        raise ValueError(f"span ({span.start}, {span.end}) outside the completion (length {len(text)})")
    ann: dict[str, Any] = {"span": text[span.start : span.end], "index": span.start, "label": span.label}
    if span.note:
        ann["verification_note"] = span.note
    return ann


def trace_to_record(trace: TokenTrace) -> dict[str, Any]:
    """The `tokens` object of a record (token texts included so a re-read needs no tokenizer)."""
    out: dict[str, Any] = {
        "ids": [int(i) for i in trace.token_ids],
        "texts": list(trace.texts),
        "offsets": [[int(s), int(e)] for s, e in trace.offsets],
        "logprobs": [finite_or_none(x) for x in trace.logprobs],
        "entropies": [finite_or_none(x) for x in trace.entropies],
    }
    if trace.scores is not None:
        out["scores"] = [finite_or_none(x) for x in trace.scores]
    return out


def trace_from_record(obj: Any, line_no: int | None = None) -> TokenTrace | None:
    """Rebuild the TokenTrace stored under "tokens", or None when the record has none.

    Missing `texts` are cut from the completion by offsets. Nulls (non-finite values
    on write) read back as NaN.
    """
    where = f"line {line_no}: " if line_no is not None else ""
    tokens = obj.get("tokens") if isinstance(obj, dict) else None
    if tokens is None:
        return None
    try:
        return _trace(tokens, obj)
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise UserError(f'{where}"tokens" is malformed ({exc})') from None


def _trace(tokens: dict, obj: dict) -> TokenTrace:
    ids = [int(i) for i in tokens["ids"]]
    offsets = [(int(s), int(e)) for s, e in tokens["offsets"]]
    texts = tokens.get("texts")
    if texts is None:
        completion = nfc(obj["conversation"][-1]["content"])
        texts = [completion[s:e] for s, e in offsets]
    strings = [str(t) for t in texts]
    logprobs = _floats(tokens["logprobs"])
    entropies = _floats(tokens["entropies"])
    scores = _floats(tokens["scores"]) if tokens.get("scores") is not None else None
    given = len(scores) if scores is not None else len(ids)
    lengths = {len(offsets), len(strings), len(logprobs), len(entropies), given}
    if lengths != {len(ids)}:
        raise ValueError("ids, offsets, texts, logprobs, entropies and scores differ in length")
    return TokenTrace(ids, strings, offsets, logprobs, entropies, scores)


def _floats(values: list) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def write_jsonl(path: str | Path, records: Iterable[dict]) -> None:
    """Write one JSON object per line, atomically: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            for record in records:
                fh.write(json.dumps(record, ensure_ascii=False))
                fh.write("\n")
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mode_for(path: Path) -> int:
    """Keep an existing file's permissions; new files get 0644 rather than mkstemp's 0600."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o644
