"""Retrain guard rails: when a validation set is too small to mean anything, say so in numbers.

A "1.00 AUC" measured on one answer is an anecdote, not a result. The thresholds are a
judgement: with fewer than 20 answers or 10 spans of either kind, the span_max AUC's
bootstrap interval is wider than any difference a retrain is likely to make.
"""

from __future__ import annotations

from typing import Any

from core.probes.stored_metrics import section, whole

MIN_ANSWERS = 20
MIN_SPANS_PER_KIND = 10


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def small_validation_warning(answers: int, hallucinated: int, supported: int) -> str | None:
    """One sentence when the validation set is too small, else None."""
    if answers >= MIN_ANSWERS and hallucinated >= MIN_SPANS_PER_KIND and supported >= MIN_SPANS_PER_KIND:
        return None
    return (
        f"The validation set holds {_plural(answers, 'answer')} and {_plural(hallucinated + supported, 'span')} "
        f"({hallucinated} hallucinated or unverifiable, {supported} supported): too few for its metrics to "
        f"mean much. Aim for at least {MIN_ANSWERS} answers and {MIN_SPANS_PER_KIND} spans of each kind in "
        "the validation split."
    )


def version_validation_warning(metrics: Any) -> str | None:
    """The same warning for a registered version, from the counts stored with its metrics."""
    counts = section(metrics, "counts")
    answers, spans, positive = (
        whole(counts.get("generations")),
        whole(counts.get("spans")),
        whole(counts.get("positive_spans")),
    )
    if answers is None or spans is None or positive is None:
        return None
    return small_validation_warning(answers, positive, max(0, spans - positive))
