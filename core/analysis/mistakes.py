"""The spans to look at by hand: the probe's worst mistakes (error browser) and the gold
labels that an out-of-fold probe confidently contradicts (label suspects).
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from core.analysis.score_levels import require_probe, span_max_scores
from core.base.errors import UserError
from core.base.numbers import finite_or_none
from core.base.progress import CancelToken, ProgressFn, check, report
from core.base.types import NOT_SUPPORTED
from core.probes.linear import QUICK_TRAIN, TrainConfig, train_probe
from core.probes.metrics import ItemScores
from core.probes.training_set import build_training_set

#: Characters of context either side of a span in the error browser.
CONTEXT_CHARS = 60


# --------------------------------------------------------------------------- error browser


def _snippet(text: str, start: int, end: int, width: int) -> dict[str, str]:
    lo, hi = max(0, start - width), min(len(text), end + width)
    before, span, after = text[lo:start], text[start:end], text[end:hi]
    return {"context": before + span + after, "before": before, "span_text": span, "after": after}


def top_errors(
    items: Sequence[ItemScores],
    keys: Sequence[str],
    texts: Sequence[str],
    spans_char: Sequence[Sequence[tuple[int, int]]],
    threshold: float = 0.5,
    k: int = 20,
    context_chars: int = CONTEXT_CHARS,
) -> dict[str, Any]:
    """The probe's worst span-level mistakes, with text to read them in.

    False positives are gold-0 spans flagged (``span_max >= threshold``), highest score
    first; false negatives are gold-1 spans not flagged, lowest score first. Reading the
    top few usually tells a labelling problem from a probe problem faster than any metric.
    ``spans_char[i][j]`` is the (start, end) character range in ``texts[i]`` (the
    completion) of span ``j`` of ``items[i]``, in the order of its ``span_labels``; spans
    with no token are not scored and skipped. Each error: ``{"key", "generation" (index),
    "span" (index), "start", "end", "score", "label", "context", "before", "span_text",
    "after"}`` (plain text, ``context_chars`` either side). Also the totals before the
    top-``k`` cut.
    """
    items = list(items)
    n = len(items)
    if not (len(keys) == len(texts) == len(spans_char) == n):
        raise ValueError(f"{n} items but {len(keys)} keys, {len(texts)} texts and {len(spans_char)} span lists")
    require_probe(items)
    thr = float(threshold)
    fps: list[tuple[float, int, int]] = []
    fns: list[tuple[float, int, int]] = []
    n_spans = 0
    for g, it in enumerate(items):
        if len(spans_char[g]) != it.span_labels.size:
            raise ValueError(
                f"generation {keys[g]!r}: {it.span_labels.size} span labels but {len(spans_char[g])} char ranges"
            )
        scores = span_max_scores(it)
        for j, (score, label) in enumerate(zip(scores.tolist(), it.span_labels.tolist())):
            if math.isnan(score):
                continue
            n_spans += 1
            if label == 0 and score >= thr:
                fps.append((score, g, j))
            elif label == 1 and score < thr:
                fns.append((score, g, j))
    fps.sort(key=lambda t: (-t[0], t[1], t[2]))
    fns.sort(key=lambda t: (t[0], t[1], t[2]))

    def record(score: float, g: int, j: int) -> dict[str, Any]:
        start, end = (int(v) for v in spans_char[g][j])
        return {
            "key": str(keys[g]),
            "generation": g,
            "span": j,
            "start": start,
            "end": end,
            "score": finite_or_none(score),
            "label": int(items[g].span_labels[j]),
            **_snippet(texts[g], start, end, context_chars),
        }

    return {
        "threshold": thr,
        "n_spans": n_spans,
        "n_false_positives": len(fps),
        "n_false_negatives": len(fns),
        "false_positives": [record(*t) for t in fps[: max(0, k)]],
        "false_negatives": [record(*t) for t in fns[: max(0, k)]],
    }


def flagged_spans(item: ItemScores, spans_char: Sequence[tuple[int, int]], threshold: float) -> list[dict[str, Any]]:
    """The labelled spans of one answer that the probe flags at `threshold` (``span_max >=
    threshold``), as hallucinated "predicted spans" for its heatmap.

    The error list judges whole labelled spans, so the heatmap beside it must too: judged
    token by token, a low threshold flags every token and outlines the whole answer as false
    positives. With these spans as the prediction, only labelled spans get an outline — a
    flagged supported span is a false positive, an unflagged hallucinated one a miss, a
    flagged hallucinated one a hit — and background text none, at any threshold.
    ``spans_char[j]`` is span ``j``'s character range (as for :func:`top_errors`).
    """
    if len(spans_char) != item.span_labels.size:
        raise ValueError(f"{item.span_labels.size} span labels but {len(spans_char)} char ranges")
    thr = float(threshold)
    return [
        {"start": int(spans_char[j][0]), "end": int(spans_char[j][1]), "label": NOT_SUPPORTED}
        for j, score in enumerate(span_max_scores(item).tolist())
        if not math.isnan(score) and score >= thr
    ]


# --------------------------------------------------------------------------- label suspects


def _fold_of(key: str, n_folds: int, salt: str = "probelens-cv") -> int:
    """Stable fold of a generation: depends on its key only, not on order or run."""
    digest = hashlib.sha256((salt + str(key)).encode("utf-8")).digest()
    u = struct.unpack(">Q", digest[:8])[0] / 2.0**64
    return min(n_folds - 1, int(u * n_folds))


def label_error_suspects(
    train_examples: Sequence[tuple[Any, Any, Any, Any, str]],
    n_folds: int = 5,
    config: TrainConfig | None = None,
    top: int = 50,
    min_confidence: float = 0.5,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> list[dict[str, Any]]:
    """Spans whose gold label an out-of-fold probe confidently contradicts.

    A probe cannot fit a few wrong labels among many right ones, so a span whose label
    disagrees sharply with a probe that never saw it is worth a second look by an
    annotator (confident-learning style). Generations are assigned to ``n_folds`` folds
    by a stable hash of their key; for each fold a probe is trained on the others
    (``core.probes.linear``, quick ``config``, default :data:`QUICK_TRAIN`) and scores the held-out
    generations. Each span's out-of-fold ``span_max`` score is compared with its label:
    ``confidence = |score - label|``; spans with ``confidence > min_confidence`` (the probe
    at 0.5 disagrees) are returned, highest first, at most ``top``.

    ``train_examples``: ``(hidden [T, H], labels [T], span_ids [T], span_labels [S], key)``
    as :func:`core.probes.training_set.build_training_set` takes. Folds whose training side lacks a
    class are skipped (their spans get no score). Each suspect: ``{"key", "generation",
    "span", "label", "score", "confidence", "fold", "kind"}``, kind ``"gold_1_low_score"``
    or ``"gold_0_high_score"``.
    """
    if int(n_folds) != n_folds or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    n_folds = int(n_folds)
    config = config or QUICK_TRAIN
    examples = list(train_examples)
    folds = [_fold_of(str(ex[4]), n_folds) for ex in examples]
    scored: list[tuple[float, int, int, int, float, int]] = []  # (-conf, gen, span, label, score, fold)
    n_trained = 0
    for f in range(n_folds):
        check(cancel)
        report(progress, "folds", f, n_folds, f"fold {f + 1}/{n_folds}")
        held = [i for i, fo in enumerate(folds) if fo == f]
        train = [examples[i] for i, fo in enumerate(folds) if fo != f]
        if not held or not train:
            continue
        try:
            data = build_training_set(train, span_weight=config.span_weight)
        except UserError:
            continue  # e.g. the other folds have no positive tokens
        probe, _ = train_probe(data, config, cancel=cancel)
        n_trained += 1
        for i in held:
            hidden, labels, span_ids, span_labels, _key = examples[i]
            p = probe.predict(hidden)
            if isinstance(p, torch.Tensor):
                p = p.detach().cpu().numpy()
            sl = np.asarray(span_labels, dtype=np.float64).reshape(-1)
            sid = np.asarray(span_ids.cpu() if isinstance(span_ids, torch.Tensor) else span_ids).reshape(-1)
            item = ItemScores(
                labels=np.zeros(sid.size, dtype=np.int8),
                span_ids=sid,
                span_labels=(sl > 0.5).astype(np.int8),
                probe=np.asarray(p, dtype=np.float64).reshape(-1),
                logprobs=np.zeros(sid.size),
                entropies=np.zeros(sid.size),
            )
            for j, score in enumerate(span_max_scores(item).tolist()):
                if math.isnan(score) or sl[j] not in (0.0, 1.0):
                    continue  # no token, or an excluded (negative) span label
                label = int(sl[j])
                scored.append((-abs(score - label), i, j, label, score, f))
    report(progress, "folds", n_folds, n_folds, "done")
    if n_trained == 0:
        raise UserError(
            "no fold could be trained: every fold's training side lacks labelled tokens of one class; add data"
        )
    scored.sort()
    out: list[dict[str, Any]] = []
    for neg_conf, i, j, label, score, f in scored:
        if -neg_conf <= min_confidence or len(out) >= top:
            break
        out.append(
            {
                "key": str(examples[i][4]),
                "generation": i,
                "span": j,
                "label": label,
                "score": finite_or_none(score),
                "confidence": finite_or_none(-neg_conf),
                "fold": f,
                "kind": "gold_1_low_score" if label == 1 else "gold_0_high_score",
            }
        )
    return out


#: What a suspect's kind says, in words for the Label suspects table (the codes stay in the data).
SUSPECT_KIND_WORDS = {
    "gold_1_low_score": "gold: hallucinated · probe: low risk",
    "gold_0_high_score": "gold: supported · probe: high risk",
}


def suspect_kind_words(kind: str) -> str:
    """A suspect's kind as people read it (an unknown code is shown as it is)."""
    return SUSPECT_KIND_WORDS.get(kind, kind)
