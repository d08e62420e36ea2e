"""The `label` run: an LLM judge pre-annotates a dataset's answers (issue #24).

For each answer: retrieve reference passages for its entities, build the judge's messages
(instructions version + the team's guidelines + answer + passages), look the call up in the
cache (answer, judge, instructions version, hash of everything shown), else ask the judge —
up to the judge's concurrency at once, in threads — read its JSON (one retry with the error
told to it), and store the outcome as it arrives: the cache row, and for a usable answer the
judge's bot account's annotation set. A cancel keeps what is stored. A re-run skips every
answer whose cached outcome is usable, so it costs nothing; an answer whose last outcome was
*judge failed* is asked again (counted as retried) and its new outcome replaces the old.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any

from core.base import settings
from core.base.progress import Cancelled, CancelToken, ProgressFn, report
from core.orchestration.judge_client import JudgeReply, JudgeUnavailable, ask, client_for, cost_of
from core.text.judging import (
    RESPONSE_FORMAT,
    Judged,
    JudgeOutputError,
    build_messages,
    context_hash,
    output_token_limit,
    parse_output,
    retry_message,
)
from core.text.readable import plural
from core.text.references import entity_queries
from db import guidelines as team_guidelines
from db.generations import get_dataset
from db.judges import (
    AnswerToJudge,
    JudgeConfig,
    answers_to_judge,
    cached_result,
    get_judge,
    instructions,
    store_result,
)
from db.models import JudgeStatus
from db.references import PassageHit, search_passages

PASSAGES_PER_QUERY = 3
MAX_PASSAGES = 8
ECHO_CHARS = 2000  # of the judge's unusable reply, what its retry shows it


@dataclass(frozen=True)
class LabelParams:
    """Judge `dataset` (its `split`, or all) with `judge` and instructions version `instructions`
    (None: the newest when the run is started)."""

    dataset: str
    judge: str
    split: str | None = None
    unlabelled_only: bool = False
    instructions: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelParams:
        version = data.get("instructions")
        return cls(
            dataset=str(data["dataset"]),
            judge=str(data["judge"]),
            split=data.get("split") or None,
            unlabelled_only=bool(data.get("unlabelled_only")),
            instructions=int(version) if version is not None else None,
        )

    def checked(self, database) -> LabelParams:
        """These params with the instructions version fixed; one UserError for anything unknown."""
        with database.reading() as session:
            judge = get_judge(session, self.judge)
            get_dataset(session, self.dataset)
            version = instructions(session, self.instructions).version
        settings.judge_api_key(judge.api_key_env, judge.name)  # a missing key fails now, not per answer
        return LabelParams(self.dataset, self.judge, self.split, self.unlabelled_only, version)


@dataclass
class _Prepared:
    answer: AnswerToJudge
    messages: list[dict[str, str]]
    passage_ids: set[int]
    key: str


@dataclass
class _Outcome:
    status: JudgeStatus | None  # None: the judge could not be reached (nothing cached)
    reason: str | None = None
    spans: list = field(default_factory=list)
    evidence: dict[int, list[int]] = field(default_factory=dict)
    unmatched: list[dict[str, Any]] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class LabelSummary:
    answers: int = 0
    labelled: int = 0
    failed: int = 0
    unavailable: int = 0
    cached: int = 0
    retried: int = 0  # asked again because their last outcome was judge failed
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    with_passages: int = 0
    unmatched: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def add_cost(self, cost: float | None) -> None:
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost

    def message(self) -> str:
        done = self.labelled + self.failed + self.unavailable + self.cached
        parts = [
            f"judged {done} of {plural(self.answers, 'answer')}: {self.labelled} labelled, "
            f"{self.failed} judge failed, {self.unavailable} not answered, {self.cached} from the cache, "
            f"{self.retried} retried after failing last time",
            f"{self.input_tokens} input + {self.output_tokens} output tokens"
            + (f", cost {self.cost:.4f}" if self.cost is not None else ", cost unknown (no prices)"),
        ]
        if self.answers and not self.with_passages:
            parts.append("no reference passages: the judge used its own knowledge")
        if self.unmatched:
            first = self.unmatched[0]
            parts.append(
                f"{plural(len(self.unmatched), 'unmatched span')} (first: answer {first['generation']}: "
                f"{first['text'][:40]!r}, {first['reason']})"
            )
        if self.reasons:
            parts.append(f"first problem: {self.reasons[0]}")
        return "; ".join(parts)


def _evidence(session, answer: str) -> list[PassageHit]:
    found: dict[int, PassageHit] = {}
    for query in entity_queries(answer):
        for hit in search_passages(session, query, PASSAGES_PER_QUERY):
            found.setdefault(hit.id, hit)
        if len(found) >= MAX_PASSAGES:
            break
    return list(found.values())[:MAX_PASSAGES]


def _prepare(database, answers: list[AnswerToJudge], judge: JudgeConfig, body: str) -> Iterator[_Prepared]:
    with database.reading() as session:
        current = team_guidelines.current(session)
    rules = current.body if current else None
    for answer in answers:
        with database.reading() as session:
            passages = _evidence(session, answer.answer)
        messages = build_messages(body, rules, answer.question, answer.answer, passages)
        yield _Prepared(answer, messages, {p.id for p in passages}, context_hash(judge.model, messages))


def _read(reply: JudgeReply, item: _Prepared, limit: int) -> Judged:
    """The reply as spans; a reply cut at the token limit is a failure of its own, whatever it
    holds (its JSON is unfinished)."""
    if reply.finish_reason == "length":
        raise JudgeOutputError(
            f"the answer was cut at the length limit of {limit} tokens before its JSON ended "
            "(write fewer spans and shorter notes)"
        )
    return parse_output(reply.text, item.answer.answer, item.passage_ids)


def judge_one(client, judge: JudgeConfig, item: _Prepared, cancel: CancelToken | None) -> _Outcome:
    """Ask, read, and once more with the error told to the judge; the outcome of one answer."""
    messages = list(item.messages)
    outcome = _Outcome(status=None)
    limit = output_token_limit()
    for attempt in (1, 2):
        try:
            reply = ask(client, judge, messages, RESPONSE_FORMAT, max_tokens=limit, cancel=cancel)
        except JudgeUnavailable as exc:
            outcome.status, outcome.reason = None, str(exc)
            return outcome
        outcome.input_tokens += reply.input_tokens
        outcome.output_tokens += reply.output_tokens
        try:
            judged = _read(reply, item, limit)
        except JudgeOutputError as exc:
            if attempt == 1:
                said = reply.text or ""
                if len(said) > ECHO_CHARS:  # a long (or cut) reply in part: the whole would crowd the context
                    said = said[:ECHO_CHARS] + "…"
                messages += [{"role": "assistant", "content": said}, retry_message(str(exc))]
                continue
            outcome.status, outcome.reason = JudgeStatus.FAILED, f"judge failed: {exc}"
            outcome.unmatched = [
                {"generation": item.answer.id, "text": u.text, "label": u.label, "reason": u.reason}
                for u in exc.unmatched
            ]
            return outcome
        outcome.status, outcome.spans, outcome.evidence = JudgeStatus.OK, judged.spans, judged.evidence
        return outcome
    return outcome  # not reached: the second attempt returns


def _store(database, judge: JudgeConfig, version: int, item: _Prepared, outcome: _Outcome, run_id, summary) -> None:
    cost = cost_of(judge, outcome.input_tokens, outcome.output_tokens)
    summary.input_tokens += outcome.input_tokens
    summary.output_tokens += outcome.output_tokens
    summary.add_cost(cost)
    summary.unmatched += outcome.unmatched
    if outcome.status is None:
        summary.unavailable += 1
        summary.reasons.append(f"answer {item.answer.id}: {outcome.reason}")
        return
    if outcome.status == JudgeStatus.FAILED:
        summary.failed += 1
        summary.reasons.append(f"answer {item.answer.id}: {outcome.reason}")
    else:
        summary.labelled += 1
    with database.sessions() as session, session.begin():
        store_result(
            session,
            judge,
            item.answer.id,
            instructions_version=version,
            evidence_hash=item.key,
            status=outcome.status,
            reason=outcome.reason,
            input_tokens=outcome.input_tokens,
            output_tokens=outcome.output_tokens,
            cost=cost,
            spans=outcome.spans,
            evidence=outcome.evidence,
            unmatched=outcome.unmatched,
            run_id=run_id,
        )


def run_label(
    database,
    params: LabelParams,
    *,
    run_id: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> LabelSummary:
    """Judge the answers; each outcome is stored as it arrives. Raises Cancelled after storing
    what finished when `cancel` is set."""
    with database.reading() as session:
        judge = get_judge(session, params.judge)
        instr = instructions(session, params.instructions)
        answers = answers_to_judge(session, params.dataset, split=params.split, unlabelled_only=params.unlabelled_only)
    summary = LabelSummary(answers=len(answers))
    client = client_for(judge)
    cancel = cancel or CancelToken()
    report(progress, "label", 0, len(answers), f"judge {judge.name}, instructions v{instr.version}")
    in_flight: dict[Future, _Prepared] = {}

    def collect(block: bool) -> None:
        done, _ = wait(list(in_flight), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            item = in_flight.pop(future)
            try:
                outcome = future.result()
            except Cancelled:
                continue
            _store(database, judge, instr.version, item, outcome, run_id, summary)
            _progress(summary)

    def _progress(s: LabelSummary) -> None:
        finished = s.labelled + s.failed + s.unavailable + s.cached
        cost = f", cost {s.cost:.4f}" if s.cost is not None else ""
        report(progress, "label", finished, s.answers, f"{s.input_tokens + s.output_tokens} tokens{cost}")

    with ThreadPoolExecutor(max_workers=judge.concurrency, thread_name_prefix=f"judge-{judge.id}") as pool:
        try:
            for item in _prepare(database, answers, judge, instr.body):
                if cancel.cancelled:
                    break
                if item.passage_ids:
                    summary.with_passages += 1
                with database.reading() as session:
                    found = cached_result(session, item.answer.id, judge.id, instr.version, item.key)
                    last = found.status if found is not None else None
                if last == JudgeStatus.OK:
                    summary.cached += 1
                    _progress(summary)
                    continue
                if last == JudgeStatus.FAILED:  # not a final answer: ask again
                    summary.retried += 1
                while len(in_flight) >= judge.concurrency:
                    collect(block=True)
                in_flight[pool.submit(judge_one, client, judge, item, cancel)] = item
            while in_flight:
                collect(block=True)
        finally:
            while in_flight:  # a cancel or an error: keep what the judge already answered
                collect(block=True)
    if cancel.cancelled:
        raise Cancelled("cancelled")
    return summary
