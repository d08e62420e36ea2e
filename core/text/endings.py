"""Why an answer ended, in words: the Generate page says it, and Annotate shows it with the saved answer."""

from __future__ import annotations

ENDINGS = {
    "eos": "The answer is complete.",
    "length": "Stopped at the token limit.",
    "stopped": "Stopped by you.",
    "cancelled": "Cancelled.",
    "error": "Stopped by an error.",
}


def ending(finish_reason: str | None, stop_note: str | None = None) -> str | None:
    """The sentence that says why an answer ended (None while it runs or when unknown)."""
    if finish_reason == "early_stop":
        return f"Early stop: {stop_note}." if stop_note else "Stopped early by the early-stop rule."
    return ENDINGS.get(finish_reason or "")
