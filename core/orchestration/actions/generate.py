"""The Generate page's actions: store a live answer, score a pasted conversation and store it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.base.types import Generation, TokenTrace
from core.orchestration.actions.acting import Actor, writing
from core.orchestration.registry import LoadedProbe
from db import Database, answer_admin
from db.generations import save_generated

PAGE = "generate"


def save_answer(
    storage: Database,
    actor: Actor,
    dataset: str,
    conversation: list[dict[str, str]],
    trace: TokenTrace,
    *,
    model_id: str,
    probe_version: int | None,
    extra: dict[str, Any] | None = None,
    source: str = "generated",
) -> int:
    """Store an answer made on the page (with its tokens and, if scored, its scores); returns its id.
    `source` is "imported" for a pasted conversation the model did not write."""
    with writing(storage, actor, PAGE) as (session, me):
        row = save_generated(
            session,
            dataset,
            Generation(conversation, model=model_id, extra=extra or {}),
            trace,
            user=me,
            probe_version=probe_version,
            source=source,
        )
        return row.id


def finished_answer_extra(finish_reason: str | None, stop_note: str | None) -> dict[str, Any]:
    """How a live answer ended, kept with it (Annotate shows it; exports carry it as finish_reason)."""
    extra: dict[str, Any] = {"finish_reason": finish_reason}
    if stop_note:
        extra["stop_note"] = stop_note
    return extra


@dataclass(frozen=True)
class Pasted:
    """A pasted conversation scored token by token with a probe."""

    conversation: list[dict[str, str]]
    trace: TokenTrace
    text: str


def score_pasted(lm, loaded: LoadedProbe, prompt: str, answer: str) -> Pasted:
    """One teacher-forced pass over the pasted (NFC-normalised) conversation, scored by `loaded`
    (a LoRA probe reads the states with its adapters on). Too long a question or answer
    (`core.engine.limits`) is one UserError before the model runs."""
    from core.engine.limits import check_pasted
    from core.engine.scoring import score_conversation
    from core.engine.stream import prompt_ids
    from core.text.tokens import nfc

    conversation = [{"role": "user", "content": nfc(prompt)}, {"role": "assistant", "content": nfc(answer)}]
    # Before the model runs: a pasted answer past the context would hold the model for minutes.
    check_pasted(lm, conversation[:1], conversation[1]["content"], prompt_ids)
    result = score_conversation(lm, conversation, [loaded.layer])
    hidden = (
        result.hidden[loaded.layer] if loaded.model is None else loaded.hidden(lm, conversation, result.trace.token_ids)
    )
    scores = [float(x) for x in loaded.predict(hidden)]
    return Pasted(conversation, result.trace.with_scores(scores), result.text)


def discard_answer(storage: Database, actor: Actor, generation_id: int) -> None:
    """Discard an answer made on the page that nobody has labelled: it is deleted (logged as
    generation.discard), so it never reaches a queue, a retrain or an export."""
    with writing(storage, actor, PAGE) as (session, me):
        answer_admin.discard_own(session, generation_id, me)
