"""How long a prompt (and a pasted answer) may be: the one check every way in goes through.

Why: a prompt past the model's context makes nonsense and costs memory and time that every
other user of the shared engine pays for (one 98 KB question held another session's stream
for minutes). The widgets cap characters (`max_chars`), but a widget is a hint; the
authoritative check is here, below them, for live Generate, pasted scoring, batch runs and
the CLI alike. Characters are checked before tokenising, so even tokenising stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.base import settings
from core.base.decoding import MAX_NEW_TOKENS
from core.base.errors import UserError

MAX_PROMPT_CHARS = 20_000  # the question and earlier turns together (also the widgets' max_chars)
MAX_ANSWER_CHARS = 40_000  # a pasted answer to score (the answer widget's max_chars)

_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


def context_tokens(lm: Any) -> int | None:
    """The model's context in tokens, from its config (None when the config does not say)."""
    config = lm.model.config
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in _CONTEXT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def prompt_chars(messages: Sequence[dict[str, str]]) -> int:
    """Characters of the prompt's messages together."""
    return sum(len(str(m.get("content", ""))) for m in messages)


def check_prompt_chars(messages: Sequence[dict[str, str]], what: str = "the question") -> None:
    """Refuse a prompt longer than MAX_PROMPT_CHARS before anything tokenises it."""
    count = prompt_chars(messages)
    if count > MAX_PROMPT_CHARS:
        raise UserError(f"{what} is too long: {count:,} characters; at most {MAX_PROMPT_CHARS:,}")


def check_lengths(lm: Any, prompt: int, answer: int, what: str = "the question", answer_what: str = "new") -> None:
    """Refuse `prompt` tokens past PROBELENS_MAX_PROMPT_TOKENS, or prompt + `answer` tokens past
    the model's context: one message saying which limit and how to get under it."""
    limit = settings.max_prompt_tokens()
    if prompt > limit:
        raise UserError(f"{what} is too long: {prompt:,} tokens; at most {limit:,} (PROBELENS_MAX_PROMPT_TOKENS)")
    context = context_tokens(lm)
    if context is not None and prompt + answer > context:
        raise UserError(
            f"{what} is too long for the model: {prompt:,} prompt tokens + {answer:,} {answer_what} tokens "
            f"= {prompt + answer:,}, past its context of {context:,} tokens; shorten it"
            + (" or lower max new tokens" if answer_what == "new" else "")
        )


def check_pasted(lm: Any, prompt: Sequence[dict[str, str]], answer: str, prompt_tokens: Any) -> None:
    """A pasted conversation to score: the question as for Generate, the answer at most
    MAX_ANSWER_CHARS and MAX_NEW_TOKENS (what Generate could have written), both in the context.
    `prompt_tokens(lm, messages)` tokenises the prompt once its characters passed."""
    what = "the pasted conversation"
    check_prompt_chars(prompt, "the pasted user message")
    if len(answer) > MAX_ANSWER_CHARS:
        raise UserError(f"the pasted answer is too long: {len(answer):,} characters; at most {MAX_ANSWER_CHARS:,}")
    answer_tokens = len(lm.tokenizer(answer, add_special_tokens=False)["input_ids"])
    if answer_tokens > MAX_NEW_TOKENS:
        raise UserError(f"the pasted answer is too long: {answer_tokens:,} tokens; at most {MAX_NEW_TOKENS:,}")
    check_lengths(lm, len(prompt_tokens(lm, prompt)), answer_tokens, what, answer_what="answer")
