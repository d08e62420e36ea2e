"""Inter-annotator agreement at token and span level (the agreement dashboard).

Annotators mark character spans; agreement is measured on the completion tokens those
spans cover, because tokens are what the probe is trained and scored on. Each
annotator gives each token one category:

    "none"          outside every span (background)
    "supported"     inside a `Supported` span
    "unverifiable"  inside an `Insufficient Information` span
    "hallucinated"  inside a `Not Supported` span

Tokens covered only by `N/A` spans, zero-width tokens and generations an annotator
did not annotate are *missing* (NaN): they are excluded, never counted as agreement.
The binary view codes 1 = `Not Supported` or `Insufficient Information`, 0 = else,
which is the label the probe learns.

Matrices are ``[n_tokens, n_annotators]`` (units in rows, raters in columns). Every
statistic returns ``None`` — never NaN, never an exception — when it is undefined
(fewer than two raters, no token both rated, a single category everywhere), so the
dashboard can show "n/a" and the report stays JSON-serialisable.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from core.base.numbers import finite_or_none
from core.base.types import LABEL_WORDS, NOT_APPLICABLE, Span
from core.text.tokens import canonical_label, offset_arrays

# Code = index. Ordered by severity: a token under several spans of one annotator takes
# the most severe, matching core.text.tokens.token_labels where 1 beats 0.
CATEGORIES: tuple[str, ...] = ("none", "supported", "unverifiable", "hallucinated")
BINARY_CATEGORIES: tuple[str, ...] = ("negative", "positive")  # 1 = hallucinated or unverifiable
# A label's category is its UI word (N/A has none: ignored).
LABEL_CATEGORY: dict[str, str | None] = {
    label: None if label == NOT_APPLICABLE else LABEL_WORDS[label] for label in LABEL_WORDS
}
# Paper label of each non-background category, for the per-label table.
CATEGORY_LABEL: dict[str, str] = {cat: label for label, cat in LABEL_CATEGORY.items() if cat}

Offsets = Sequence[tuple[int, int]]
Item = tuple[Offsets, Mapping[str, Sequence[Span] | None]]
SpanMode = Literal["exact", "overlap"]


# --- token categories -----------------------------------------------------------------


def token_categories(offsets: Offsets, spans: Sequence[Span] | None, binary: bool = False) -> np.ndarray:
    """One annotator's category code per token (float, NaN = missing).

    ``spans is None`` means the annotator did not annotate this generation, so every
    token is missing rather than background: silence is not a "none" vote.
    """
    n = len(offsets)
    if spans is None:
        return np.full(n, np.nan)
    starts, ends = offset_arrays(offsets)
    wide = starts < ends
    severity = np.zeros(n, dtype=np.int64)  # 0 = none, else CATEGORIES index
    only_na = np.zeros(n, dtype=bool)
    for span in spans:
        hit = (starts < span.end) & (span.start < ends) & wide
        category = LABEL_CATEGORY[canonical_label(span.label)]
        if category is None:
            only_na |= hit
        else:
            severity = np.where(hit, np.maximum(severity, CATEGORIES.index(category)), severity)
    codes = severity.astype(float)
    if binary:
        codes = (severity >= CATEGORIES.index("unverifiable")).astype(float)
    codes[(only_na & (severity == 0)) | ~wide] = np.nan
    return codes


def item_matrix(item: Item, annotators: Sequence[str], binary: bool = False) -> np.ndarray:
    """``[n_tokens, n_annotators]`` codes of one generation (an absent annotator = missing)."""
    offsets, by_annotator = item
    columns = [token_categories(offsets, by_annotator.get(name), binary) for name in annotators]
    if not columns:
        return np.full((len(offsets), 0), np.nan)
    return np.column_stack(columns) if len(offsets) else np.full((0, len(annotators)), np.nan)


def token_matrix(
    items: Sequence[Item], annotators: Sequence[str], binary: bool = False
) -> tuple[np.ndarray, list[str]]:
    """All generations' tokens stacked: ``(codes [n_tokens_total, n_annotators], categories)``.

    ``categories[code]`` names each code; NaN marks a missing rating.
    """
    names = list(BINARY_CATEGORIES if binary else CATEGORIES)
    parts = [item_matrix(item, annotators, binary) for item in items]
    if not parts:
        return np.full((0, len(annotators)), np.nan), names
    return np.vstack(parts), names


# --- helpers shared by the statistics -------------------------------------------------


def _pairable(matrix: np.ndarray) -> np.ndarray:
    """Rows rated by at least two raters: the only ones that carry agreement information."""
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2:
        raise ValueError(f"expected a [tokens, annotators] matrix, got shape {m.shape}")
    return m[np.sum(~np.isnan(m), axis=1) >= 2]


def _single_value(values: np.ndarray) -> bool:
    """True when fewer than two distinct categories occur: chance agreement is 1."""
    observed = values[~np.isnan(values)]
    return np.unique(observed).size < 2


# --- the statistics -------------------------------------------------------------------


def cohen_kappa(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float | None:
    """Cohen's kappa of two raters over the tokens both rated (sklearn).

    None when no token is rated by both or when both use one and the same category
    (expected agreement 1: kappa is 0/0).
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"rater vectors differ in length ({x.size} vs {y.size})")
    both = ~np.isnan(x) & ~np.isnan(y)
    x, y = x[both].astype(np.int64), y[both].astype(np.int64)
    if x.size == 0 or np.unique(np.concatenate([x, y])).size < 2:
        return None
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return finite_or_none(cohen_kappa_score(x, y))


def fleiss_kappa(matrix: np.ndarray) -> float | None:
    """Fleiss' kappa over the tokens rated by *all* raters (statsmodels).

    Fleiss' formula assumes the same number of ratings per unit, so partially rated
    tokens are dropped here (Krippendorff's alpha and Gwet's AC1 keep them).
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape[1] < 2:
        return None
    complete = m[~np.isnan(m).any(axis=1)]
    if complete.shape[0] == 0 or _single_value(complete):
        return None
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

    table, _ = aggregate_raters(complete.astype(np.int64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return finite_or_none(sm_fleiss_kappa(table, method="fleiss"))


def krippendorff_alpha(
    matrix: np.ndarray, level: Literal["nominal", "ordinal", "interval", "ratio"] = "nominal"
) -> float | None:
    """Krippendorff's alpha (the `krippendorff` package), missing ratings allowed.

    Units with fewer than two ratings are removed first: they add nothing to alpha and
    would otherwise let an unpaired category make expected disagreement look non-zero.
    """
    pairable = _pairable(matrix)
    if pairable.shape[0] == 0 or _single_value(pairable):
        return None
    import krippendorff

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = krippendorff.alpha(reliability_data=pairable.T, level_of_measurement=level)
    except (ValueError, ZeroDivisionError):
        return None
    return finite_or_none(value)


def gwet_ac1(matrix: np.ndarray, n_categories: int | None = None) -> float | None:
    """Gwet's AC1 for any number of raters with missing ratings (Gwet 2008; 2014 ch. 2).

    With r_i ratings of unit i, r_ik of them in category k and q categories:
      p_a  = mean over units with r_i >= 2 of  sum_k r_ik (r_ik - 1) / (r_i (r_i - 1))
      pi_k = mean over units with r_i >= 1 of  r_ik / r_i
      p_e  = 1/(q-1) * sum_k pi_k (1 - pi_k)
      AC1  = (p_a - p_e) / (1 - p_e)
    `n_categories` is q of the labelling scheme; by default the number of categories
    observed. Unlike kappa, AC1 stays defined when everyone uses one category of a
    q >= 2 scheme (p_e = 0) — the reason it is reported beside kappa for rare labels.
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape[1] < 2:
        return None
    rated = m[np.sum(~np.isnan(m), axis=1) >= 1]
    values = np.unique(rated[~np.isnan(rated)])
    q = len(values) if n_categories is None else n_categories
    if q < 2 or len(values) > q or not (np.sum(~np.isnan(m), axis=1) >= 2).any():
        return None
    counts = np.stack([np.sum(rated == v, axis=1) for v in values], axis=1).astype(float)
    r_i = counts.sum(axis=1)
    pairs = r_i >= 2
    p_a = np.mean(np.sum(counts[pairs] * (counts[pairs] - 1), axis=1) / (r_i[pairs] * (r_i[pairs] - 1)))
    pi = np.mean(counts / r_i[:, None], axis=0)
    p_e = float(np.sum(pi * (1 - pi)) / (q - 1))
    if p_e >= 1:
        return None
    return finite_or_none((p_a - p_e) / (1 - p_e))


# --- span-level agreement -------------------------------------------------------------


def _span_key(span: Span, labels: bool) -> tuple[int, int, str]:
    return span.start, span.end, canonical_label(span.label) if labels else ""


def _overlaps(x: tuple[int, int, str], y: tuple[int, int, str]) -> bool:
    return x[0] < y[1] and y[0] < x[1] and x[2] == y[2]


def span_match_counts(
    spans_a: Sequence[Span], spans_b: Sequence[Span], mode: SpanMode = "exact", labels: bool = True
) -> tuple[int, int, int, int]:
    """``(matched_a, matched_b, n_a, n_b)``: the counts behind `span_f1`.

    Exposed so several generations can be micro-averaged (summing counts, not F1s).
    Exact: a span matches one identical span of the other side (a multiset match).
    Overlap: a span matches if it shares a character with a same-label span of the other.
    """
    keys_a = [_span_key(s, labels) for s in spans_a]
    keys_b = [_span_key(s, labels) for s in spans_b]
    if mode == "exact":
        common = sum((Counter(keys_a) & Counter(keys_b)).values())
        return common, common, len(keys_a), len(keys_b)
    if mode == "overlap":
        hit_a = sum(any(_overlaps(x, y) for y in keys_b) for x in keys_a)
        hit_b = sum(any(_overlaps(y, x) for x in keys_a) for y in keys_b)
        return hit_a, hit_b, len(keys_a), len(keys_b)
    raise ValueError(f"unknown span match mode {mode!r} (expected 'exact' or 'overlap')")


def f1_from_counts(matched_a: int, matched_b: int, n_a: int, n_b: int) -> dict[str, float | None]:
    """Precision/recall/F1 with `a` as the reference; None where a ratio is 0/0.

    F1 is 0 when exactly one side has spans (total disagreement) and None when
    neither has any (nothing to agree on).
    """
    recall = matched_a / n_a if n_a else None
    precision = matched_b / n_b if n_b else None
    if recall is None and precision is None:
        f1 = None
    elif recall is None or precision is None or precision + recall == 0:
        f1 = 0.0
    else:
        f1 = 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1}


def span_f1(
    spans_a: Sequence[Span], spans_b: Sequence[Span], mode: SpanMode = "exact", labels: bool = True
) -> dict[str, float | None]:
    """Span agreement of b against reference a: ``{"precision", "recall", "f1"}``.

    `labels=False` compares positions only. Swapping a and b swaps precision and
    recall; F1 is symmetric.
    """
    return f1_from_counts(*span_match_counts(spans_a, spans_b, mode, labels))


# --- the report -----------------------------------------------------------------------


def pair_key(a: str, b: str) -> str:
    """JSON object key of an annotator pair in `agreement_report()["disagreements"]`."""
    return f"{a}|{b}"


def _annotated(item: Item, name: str) -> bool:
    return item[1].get(name) is not None


def _pair_report(items: Sequence[Item], a: str, b: str) -> tuple[dict, list[int]]:
    """One row of the pairs table, plus the generations where the two disagree on a token."""
    both = [i for i, item in enumerate(items) if _annotated(item, a) and _annotated(item, b)]
    sub = [items[i] for i in both]
    full, _ = token_matrix(sub, [a, b])
    binary, _ = token_matrix(sub, [a, b], binary=True)
    modes: tuple[SpanMode, ...] = ("exact", "overlap")
    counts = {mode: [0, 0, 0, 0] for mode in modes}
    disagree: list[int] = []
    for index, item in zip(both, sub):
        spans_a, spans_b = item[1][a], item[1][b]
        assert spans_a is not None and spans_b is not None, "`both` holds the items both annotated"
        for mode, total in counts.items():
            for k, c in enumerate(span_match_counts(spans_a, spans_b, mode)):
                total[k] += c
        m = item_matrix(item, [a, b])
        rated = ~np.isnan(m).any(axis=1)
        if np.any(m[rated, 0] != m[rated, 1]):
            disagree.append(index)
    row = {
        "a": a,
        "b": b,
        "cohen_kappa": cohen_kappa(full[:, 0], full[:, 1]),
        "cohen_kappa_binary": cohen_kappa(binary[:, 0], binary[:, 1]),
        "span_f1_exact": f1_from_counts(*counts["exact"])["f1"],
        "span_f1_overlap": f1_from_counts(*counts["overlap"])["f1"],
        "n_tokens": int(np.sum(~np.isnan(full).any(axis=1))),
        "n_items": len(both),
    }
    return row, disagree


def _one_vs_rest(matrix: np.ndarray, code: int) -> np.ndarray:
    """1 where a rater chose `code`, 0 for any other category, NaN stays missing."""
    out = (matrix == code).astype(float)
    out[np.isnan(matrix)] = np.nan
    return out


def _per_label(matrix: np.ndarray) -> dict[str, dict]:
    """Alpha and AC1 of each paper label against the rest, on tokens rated at least twice."""
    pairable = _pairable(matrix)
    report: dict[str, dict] = {}
    for category, label in CATEGORY_LABEL.items():
        binary = _one_vs_rest(pairable, CATEGORIES.index(category))
        report[label] = {
            "krippendorff_alpha": krippendorff_alpha(binary),
            "gwet_ac1": gwet_ac1(binary, n_categories=2),
            "n_positive": int(np.nansum(binary)),
        }
    return report


def agreement_report(items: Sequence[Item], annotators: Sequence[str]) -> dict:
    """Everything the agreement dashboard shows, as plain JSON-serialisable data.

    - ``pairs``: per annotator pair, on the generations both annotated.
    - ``overall``: multi-rater statistics on the 4-way categories; ``n_tokens`` counts
      tokens rated by at least two annotators, ``n_items`` generations annotated by at
      least two (Fleiss' kappa further restricts itself to tokens rated by all).
    - ``per_label``: one-vs-rest agreement for each paper label (except N/A);
      ``n_positive`` counts (token, annotator) ratings with that label.
    - ``disagreements``: for each `pair_key`, the indexes into `items` of generations
      where the pair's token categories differ somewhere — the review queue.
    """
    names = list(annotators)
    matrix, _ = token_matrix(items, names)
    pairs, disagreements = [], {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            row, disagree = _pair_report(items, a, b)
            pairs.append(row)
            disagreements[pair_key(a, b)] = disagree
    multi = sum(1 for item in items if sum(_annotated(item, n) for n in names) >= 2)
    overall = {
        "fleiss_kappa": fleiss_kappa(matrix),
        "krippendorff_alpha": krippendorff_alpha(matrix),
        "gwet_ac1": gwet_ac1(matrix, n_categories=len(CATEGORIES)),
        "n_tokens": int(_pairable(matrix).shape[0]),
        "n_items": multi,
    }
    return {"pairs": pairs, "overall": overall, "per_label": _per_label(matrix), "disagreements": disagreements}


# Column headings people read (the report's keys stay stable for code and exports).
PAIR_COLUMNS = {
    "a": "annotator A",
    "b": "annotator B",
    "cohen_kappa": "Cohen's κ (4 labels)",
    "cohen_kappa_binary": "Cohen's κ (hallucinated or not)",
    "span_f1_exact": "span F1 (exact)",
    "span_f1_overlap": "span F1 (overlap)",
    "n_tokens": "tokens",
    "n_items": "answers",
}
LABEL_COLUMNS = {"krippendorff_alpha": "Krippendorff's α", "gwet_ac1": "Gwet's AC1", "n_positive": "tokens with it"}


# --- a judge against the people and gold ------------------------------------------------------


def _with_label(spans: Sequence[Span], label: str | None) -> list[Span]:
    return [s for s in spans if label is None or canonical_label(s.label) == label]


def judge_agreement(items: Sequence[Item], judge: str, others: Sequence[str]) -> list[dict]:
    """How far an LLM judge's sets agree with each other rater (a person or gold), overall and per
    label: Cohen's κ on the tokens both rated (per label: that label against the rest) and span F1
    (`other` is the reference), on the answers both labelled. Raters with no shared answer are left out."""
    rows: list[dict] = []
    for other in others:
        both = [item for item in items if _annotated(item, judge) and _annotated(item, other)]
        if not both or other == judge:
            continue
        matrix, _ = token_matrix(both, [other, judge])
        for label in (None, *CATEGORY_LABEL.values()):
            if label is None:
                ref, got = matrix[:, 0], matrix[:, 1]
            else:
                code = CATEGORIES.index(CATEGORY_LABEL_INVERSE[label])
                ref, got = _one_vs_rest(matrix[:, :1], code)[:, 0], _one_vs_rest(matrix[:, 1:], code)[:, 0]
            counts = {"exact": [0, 0, 0, 0], "overlap": [0, 0, 0, 0]}
            for _offsets, sets in both:
                spans_ref, spans_got = sets[other] or [], sets[judge] or []
                for mode, total in counts.items():
                    found = span_match_counts(_with_label(spans_ref, label), _with_label(spans_got, label), mode)  # type: ignore[arg-type]
                    for k, c in enumerate(found):
                        total[k] += c
            rows.append(
                {
                    "judge": judge,
                    "against": other,
                    "label": label or "all labels",
                    "cohen_kappa": cohen_kappa(ref, got),
                    "span_f1_exact": f1_from_counts(*counts["exact"])["f1"],
                    "span_f1_overlap": f1_from_counts(*counts["overlap"])["f1"],
                    "n_items": len(both),
                }
            )
    return rows


CATEGORY_LABEL_INVERSE: dict[str, str] = {label: cat for cat, label in CATEGORY_LABEL.items()}
JUDGE_COLUMNS = {
    "judge": "judge",
    "against": "against",
    "label": "label",
    "cohen_kappa": "Cohen's κ",
    "span_f1_exact": "span F1 (exact)",
    "span_f1_overlap": "span F1 (overlap)",
    "n_items": "answers",
}
