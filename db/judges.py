"""LLM judges, their versioned instructions, and the cache of their results (issue #24).

A judge owns a bot account (`users.bot`): its labels are that account's annotation sets, so
the queue, agreement, Review's merge and the label rule treat it like a person; the account
cannot sign in (`db.users.authenticate` refuses it). Functions take a Session and never commit.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session

from core.base.errors import UserError
from core.base.types import Span
from core.text.judging import DEFAULT_INSTRUCTIONS
from db.annotations import get_set, save_annotation_set
from db.assignments import utc
from db.events import log_event
from db.generations import get_dataset
from db.models import GOLD_OWNER, AnnotationSet, Generation, Judge, JudgeInstruction, JudgeResult, JudgeStatus, User
from db.users import MAX_NAME_LENGTH, _clean_name, _find, hasher, name_key

MAX_JUDGE_NAME = 60
MAX_INSTRUCTIONS_CHARS = 50_000
MAX_CONCURRENCY = 64
BOT_PREFIX = "judge-"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")


@dataclass(frozen=True)
class JudgeConfig:
    """A judge as the label run needs it: plain data, safe to pass to threads."""

    id: int
    name: str
    base_url: str
    model: str
    api_key_env: str | None
    price_input_per_m: float | None
    price_output_per_m: float | None
    concurrency: int
    timeout_s: float
    bot_user_id: int
    bot_name: str


@dataclass(frozen=True)
class Instructions:
    version: int  # 0: the built-in default, until an admin saves a version
    body: str
    author: str | None
    created_at: datetime | None


def _require_admin(actor: User | None) -> None:
    if actor is not None and actor.role != "admin":
        raise UserError("only an admin can configure judges")


def _price(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise UserError(f"{what} must be a number >= 0")
    return float(value)


def _config(judge: Judge, bot: User) -> JudgeConfig:
    return JudgeConfig(
        judge.id,
        judge.name,
        judge.base_url,
        judge.model,
        judge.api_key_env,
        judge.price_input_per_m,
        judge.price_output_per_m,
        judge.concurrency,
        judge.timeout_s,
        bot.id,
        bot.name,
    )


def add_judge(
    session: Session,
    name: str,
    *,
    base_url: str,
    model: str,
    api_key_env: str | None = None,
    price_input_per_m: float | None = None,
    price_output_per_m: float | None = None,
    concurrency: int = 4,
    timeout_s: float = 120.0,
    actor: User | None = None,
) -> JudgeConfig:
    """A new judge and its bot account `judge-<name>` (refused, nothing written, on bad input)."""
    _require_admin(actor)
    name = _clean_name(name) if isinstance(name, str) else name
    if not isinstance(name, str) or len(name) > MAX_JUDGE_NAME:
        raise UserError(f"a judge's name must be 1 to {MAX_JUDGE_NAME} characters")
    if not isinstance(base_url, str) or not re.match(r"^https?://[^\s/]+\S*$", base_url.strip()):
        raise UserError("the judge's base URL must be an http(s) address, e.g. http://127.0.0.1:8000/v1")
    if not isinstance(model, str) or not model.strip() or len(model) > 300:
        raise UserError("the judge's model must be 1 to 300 characters")
    if api_key_env is not None and not _ENV_NAME.match(api_key_env):
        raise UserError("the API key setting is the *name* of an environment variable (letters, digits, _)")
    if not isinstance(concurrency, int) or not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UserError(f"concurrency must be a whole number from 1 to {MAX_CONCURRENCY}")
    if not isinstance(timeout_s, int | float) or not 1 <= timeout_s <= 3600:
        raise UserError("the timeout must be 1 to 3600 seconds")
    if session.scalar(select(Judge).where(Judge.name == name)) is not None:
        raise UserError(f"a judge named '{name}' exists")
    bot_name = f"{BOT_PREFIX}{name}"[:MAX_NAME_LENGTH]
    if _find(session, bot_name) is not None:
        raise UserError(f"an account named '{bot_name}' exists; choose another judge name")
    # a random password nobody knows, and `bot` makes authenticate refuse the account anyway
    bot = User(
        name=bot_name, name_key=name_key(bot_name), password_hash=hasher.hash(secrets.token_urlsafe(32)), bot=True
    )
    session.add(bot)
    session.flush()
    judge = Judge(
        name=name,
        base_url=base_url.strip(),
        model=model.strip(),
        api_key_env=api_key_env,
        price_input_per_m=_price(price_input_per_m, "the input price"),
        price_output_per_m=_price(price_output_per_m, "the output price"),
        concurrency=concurrency,
        timeout_s=float(timeout_s),
        bot_user_id=bot.id,
        created_by=actor.id if actor else None,
    )
    session.add(judge)
    session.flush()
    log_event(
        session,
        user=actor,
        action="judge.add",
        entity="judges",
        entity_id=judge.id,
        after={"name": name, "base_url": judge.base_url, "model": judge.model, "bot": bot_name},
    )
    return _config(judge, bot)


def list_judges(session: Session) -> list[JudgeConfig]:
    rows = session.execute(select(Judge, User).join(User, User.id == Judge.bot_user_id).order_by(Judge.name))
    return [_config(j, u) for j, u in rows]


def get_judge(session: Session, name: str) -> JudgeConfig:
    row = session.execute(
        select(Judge, User).join(User, User.id == Judge.bot_user_id).where(Judge.name == name)
    ).first()
    if row is None:
        raise UserError(f"unknown judge '{name}'")
    return _config(*row)


def remove_judge(session: Session, name: str, *, actor: User | None = None) -> None:
    """Remove the judge and its cache; its bot account is deactivated and its labels kept."""
    _require_admin(actor)
    judge = session.scalar(select(Judge).where(Judge.name == name))
    if judge is None:
        raise UserError(f"unknown judge '{name}'")
    bot = session.get(User, judge.bot_user_id)
    session.delete(judge)
    if bot is not None:
        bot.active = False
    log_event(session, user=actor, action="judge.remove", entity="judges", entity_id=judge.id, before={"name": name})
    session.flush()


# --- instructions ----------------------------------------------------------------------------


def current_instructions(session: Session) -> Instructions:
    """The newest saved version, else the built-in default (version 0)."""
    return instructions(session, None)


def instructions(session: Session, version: int | None) -> Instructions:
    query = select(JudgeInstruction, User.name).outerjoin(User, User.id == JudgeInstruction.created_by)
    if version is None:
        query = query.order_by(JudgeInstruction.version.desc()).limit(1)
    elif version == 0:
        return Instructions(0, DEFAULT_INSTRUCTIONS, None, None)
    else:
        query = query.where(JudgeInstruction.version == version)
    row = session.execute(query).first()
    if row is None:
        if version is None:
            return Instructions(0, DEFAULT_INSTRUCTIONS, None, None)
        raise UserError(f"no judge instructions version {version}")
    found, author = row
    return Instructions(found.version, found.body, author, utc(found.created_at))


def save_instructions(session: Session, body: str, *, actor: User | None) -> Instructions:
    """A new version of the instructions (nothing overwritten)."""
    _require_admin(actor)
    if not isinstance(body, str) or not body.strip():
        raise UserError("the judge's instructions must not be empty")
    if len(body) > MAX_INSTRUCTIONS_CHARS:
        raise UserError(f"the judge's instructions must be at most {MAX_INSTRUCTIONS_CHARS} characters")
    version = int(session.scalar(select(func.coalesce(func.max(JudgeInstruction.version), 0))) or 0) + 1
    session.add(JudgeInstruction(version=version, body=body, created_by=actor.id if actor else None))
    session.flush()
    log_event(
        session,
        user=actor,
        action="judge.instructions",
        entity="judge_instructions",
        entity_id=version,
        after={"version": version, "chars": len(body)},
    )
    return instructions(session, version)


# --- results ---------------------------------------------------------------------------------


def cached_result(
    session: Session, generation_id: int, judge_id: int, instructions_version: int, evidence_hash: str
) -> JudgeResult | None:
    return session.scalar(
        select(JudgeResult).where(
            JudgeResult.generation_id == generation_id,
            JudgeResult.judge_id == judge_id,
            JudgeResult.instructions_version == instructions_version,
            JudgeResult.evidence_hash == evidence_hash,
        )
    )


def store_result(
    session: Session,
    judge: JudgeConfig,
    generation_id: int,
    *,
    instructions_version: int,
    evidence_hash: str,
    status: JudgeStatus,
    reason: str | None,
    input_tokens: int,
    output_tokens: int,
    cost: float | None,
    spans: list[Span],
    evidence: dict[int, list[int]] | None = None,
    unmatched: list[dict[str, Any]] | None = None,
    run_id: int | None = None,
) -> JudgeResult:
    """Cache one outcome; an `ok` one also becomes the bot's annotation set (a new version of it).
    A failed outcome cached for the same key (a re-run asked again) is replaced: the cache holds
    the newest outcome.

    Spans carry their note; `evidence` maps a span's start to the passage ids it cites."""
    bot = session.get(User, judge.bot_user_id)
    if bot is None:
        raise UserError(f"the account of judge '{judge.name}' is gone")
    earlier = cached_result(session, generation_id, judge.id, instructions_version, evidence_hash)
    if earlier is not None:
        if earlier.status != JudgeStatus.FAILED:
            raise UserError(f"answer {generation_id} is already judged by '{judge.name}' with these instructions")
        session.delete(earlier)
        session.flush()
    spans_json = [
        {
            "start": s.start,
            "end": s.end,
            "label": s.label,
            "note": s.note,
            "evidence": (evidence or {}).get(s.start, []),
        }
        for s in spans
    ]
    result = JudgeResult(
        generation_id=generation_id,
        judge_id=judge.id,
        instructions_version=instructions_version,
        evidence_hash=evidence_hash,
        status=status,
        reason=reason,
        input_tokens=int(input_tokens),
        output_tokens=int(output_tokens),
        cost=cost,
        spans=spans_json if status == JudgeStatus.OK else [],
        unmatched=unmatched or [],
        run_id=run_id,
    )
    session.add(result)
    if status == JudgeStatus.OK:
        existing = get_set(session, generation_id, bot)
        save_annotation_set(
            session,
            generation_id,
            spans,
            owner=bot,
            expected_version=existing.version if existing else 0,
            actor=bot,
            action="annotation.judge",
            detail=f"judge {judge.name}, instructions v{instructions_version}" + (f", run {run_id}" if run_id else ""),
        )
    session.flush()
    return result


def judged_spans(session: Session, generation_id: int) -> list[tuple[str, list[dict[str, Any]]]]:
    """Each judge's newest usable result on this answer: (judge name, its spans with notes and
    cited passage ids), for the Annotate page's suggestions."""
    rows = session.execute(
        select(Judge.name, JudgeResult.spans)
        .join(JudgeResult, JudgeResult.judge_id == Judge.id)
        .where(JudgeResult.generation_id == generation_id, JudgeResult.status == JudgeStatus.OK)
        .order_by(Judge.name, JudgeResult.id.desc())
    )
    newest: dict[str, list[dict[str, Any]]] = {}
    for name, spans in rows:
        newest.setdefault(name, list(spans or []))
    return list(newest.items())


def bot_ids(session: Session) -> set[int]:
    return set(session.scalars(select(User.id).where(User.bot.is_(True))))


@dataclass(frozen=True)
class AnswerToJudge:
    id: int
    question: str | None
    answer: str


def answers_to_judge(
    session: Session, dataset: str, *, split: str | None = None, unlabelled_only: bool = False
) -> list[AnswerToJudge]:
    """A dataset's answers (of one split), in id order; `unlabelled_only` leaves out every answer
    with gold or a person's set (a model's set does not count as labelled)."""
    found = get_dataset(session, dataset)
    query = select(Generation.id, Generation.conversation, Generation.completion).where(
        Generation.dataset_id == found.id
    )
    if split:
        query = query.where(Generation.split == split)
    if unlabelled_only:
        person = select(User.id).where(User.id == AnnotationSet.annotator_id, User.bot.is_(False))
        labelled = exists().where(
            AnnotationSet.generation_id == Generation.id,
            or_(AnnotationSet.owner == GOLD_OWNER, exists(person)),
        )
        query = query.where(~labelled)
    out = []
    for gen_id, conversation, completion in session.execute(query.order_by(Generation.id)):
        users = [m.get("content") for m in conversation or [] if isinstance(m, dict) and m.get("role") == "user"]
        out.append(AnswerToJudge(gen_id, users[-1] if users else None, completion))
    return out


def bot_names(session: Session) -> set[str]:
    """The names of the model (judge) accounts, as agreement tables name annotators."""
    return set(session.scalars(select(User.name).where(User.bot.is_(True))))
