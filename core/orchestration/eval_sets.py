"""What the Inspect page looks at, computed without Streamlit: a probe version scored on the
labelled answers of chosen datasets and splits, and the extra passes (layers, suspects,
another version) the page asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from core.analysis.comparison import layer_auc_ci, layer_token_matrix
from core.analysis.mistakes import label_error_suspects
from core.base.errors import UserError
from core.base.progress import CancelToken, ProgressFn
from core.base.types import TokenTrace
from core.orchestration.registry import load_version
from core.probes.metrics import ItemScores
from core.probes.pipeline import best_layer, prepare, train_per_layer
from db.labels import labelled_generations
from db.labels import labels_revision as stored_labels_revision


@dataclass
class EvalSet:
    """One probe version on some labelled answers; index i is the same answer everywhere."""

    probe_version: int
    layer: int
    row_ids: list[int]
    splits: list[str]
    keys: list[str]  # str(row id): what core.analysis calls a generation's key
    texts: list[str]  # completions
    spans_char: list[list[tuple[int, int]]]  # per scored span, token-snapped char range
    gold_spans: list[list[dict[str, Any]]]  # the truth spans, for drawing
    items: list[ItemScores]
    traces: list[TokenTrace]  # tokens with this probe's scores, for heatmaps
    prepared: list[Any]  # core.probes.pipeline.PreparedItem (hidden states at `layer`)


def labels_revision(database) -> str:
    """Changes whenever any label set changes: part of every cache key of the page."""

    with database.sessions() as session:
        return stored_labels_revision(session)


def _labelled(database, datasets: Sequence[str] | None, splits: Sequence[str] | None):

    with database.sessions() as session:
        found = labelled_generations(
            session, datasets=list(datasets) if datasets else None, splits=list(splits) if splits else None
        )
    if not found:
        raise UserError("no labelled answers in the chosen datasets and splits")
    return found


def _probe_scores(item: ItemScores) -> list[float]:
    # A loaded probe's item_scores always carry its scores: only baselines have none.
    assert item.probe is not None, "item scores of a probe without the probe's scores"
    return item.probe.tolist()


def _span_chars(offsets: Sequence[tuple[int, int]], token_ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(int(offsets[a][0]), int(offsets[b - 1][1])) for a, b in token_ranges]


def evaluation_set(
    database,
    lm,
    probe_version: int,
    datasets: Sequence[str] | None = None,
    splits: Sequence[str] | None = ("validation",),
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> EvalSet:
    """Score every labelled answer of the chosen data with probe `probe_version` (cached hidden states)."""

    probe = load_version(database, lm, probe_version)
    layer = probe.layer
    labelled = _labelled(database, datasets, splits)
    prepared = prepare(lm, [x.generation for x in labelled], [layer], progress=progress, cancel=cancel)
    items, traces = _scored(probe, lm, prepared)
    return EvalSet(
        probe_version=probe_version,
        layer=layer,
        row_ids=[x.row_id for x in labelled],
        splits=[x.split for x in labelled],
        keys=[str(x.row_id) for x in labelled],
        texts=[x.generation.completion for x in labelled],
        spans_char=[_span_chars(p.acts.trace.offsets, p.labels.span_token_ranges) for p in prepared],
        gold_spans=[[{"start": s.start, "end": s.end, "label": s.label} for s in x.generation.spans] for x in labelled],
        items=items,
        traces=traces,
        prepared=prepared,
    )


def rescored(eval_set: EvalSet, database, lm, probe_version: int) -> EvalSet:
    """The same answers scored by another version (paired comparisons need the same items)."""

    probe = load_version(database, lm, probe_version)
    layer = probe.layer
    prepared = (
        eval_set.prepared
        if layer == eval_set.layer
        else prepare(lm, [p.generation for p in eval_set.prepared], [layer])
    )
    items, traces = _scored(probe, lm, prepared)
    return replace(eval_set, probe_version=probe_version, layer=layer, items=items, traces=traces, prepared=prepared)


def _scored(probe, lm, prepared: list[Any]) -> tuple[list[ItemScores], list[TokenTrace]]:
    """Each prepared answer's scores by `probe`, and its trace carrying them (for the heatmaps)."""
    items = probe.item_scores(lm, prepared)
    return items, [p.acts.trace.with_scores(_probe_scores(it)) for p, it in zip(prepared, items)]


def first_token_of(eval_set: EvalSet, index: int, start: int) -> int:
    """The token where a character range starts (what the heatmap scrolls to and flashes)."""
    for t, (a, b) in enumerate(eval_set.traces[index].offsets):
        if a <= start < b or a >= start:
            return t
    return 0


def suspects(
    eval_set: EvalSet, *, top: int = 30, progress: ProgressFn | None = None, cancel: CancelToken | None = None
) -> list[dict[str, Any]]:
    """Cross-validated label-error suspects among these answers, with row ids and text."""

    examples = [
        (p.acts.hidden[eval_set.layer], p.labels.labels, p.labels.span_ids, p.labels.span_labels, key)
        for p, key in zip(eval_set.prepared, eval_set.keys)
    ]
    found = label_error_suspects(examples, top=top, progress=progress, cancel=cancel)
    out = []
    for s in found:
        g, j = int(s["generation"]), int(s["span"])
        start, end = eval_set.spans_char[g][j]
        out.append(
            {**s, "row_id": eval_set.row_ids[g], "start": start, "end": end, "span_text": eval_set.texts[g][start:end]}
        )
    return out


@dataclass
class LayerScan:
    rows: list[dict[str, Any]]  # layer_auc_ci rows
    probes: dict[int, Any]  # layer -> quick probe trained on the train side
    best_layer: int | None


#: The layer sweep's stages and their shares of one bar: hidden states, a probe per layer, the CIs.
LAYER_SCAN_SHARES = {"extract": (0.0, 0.5), "layers": (0.5, 0.8), "intervals": (0.8, 1.0)}


def layer_scan(
    database,
    lm,
    datasets: Sequence[str] | None,
    eval_splits: Sequence[str],
    layers: Sequence[int] | None = None,
    *,
    n_boot: int = 200,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> LayerScan:
    """A quick probe per layer trained on the train split, AUC with CIs on the chosen splits
    (progress: the stages of `LAYER_SCAN_SHARES`, each pass counted from 0)."""

    chosen = sorted({lm.check_layer(x) for x in (layers if layers is not None else range(lm.num_layers))})
    train_l = _labelled(database, datasets, ["train"])
    eval_l = _labelled(database, datasets, eval_splits)
    train_ids = {x.row_id for x in train_l}
    eval_l = [x for x in eval_l if x.row_id not in train_ids]
    if not eval_l:
        raise UserError("the layer sweep needs answers outside the train split to measure on")
    everything = prepare(lm, [x.generation for x in train_l + eval_l], chosen, progress=progress, cancel=cancel)
    probes, per_layer = train_per_layer(
        everything[: len(train_l)], everything[len(train_l) :], chosen, progress=progress, cancel=cancel
    )
    rows = layer_auc_ci(per_layer, n_boot=n_boot, progress=progress, cancel=cancel)
    best = best_layer(rows)
    return LayerScan(rows, probes, best)


def token_scan(lm, eval_set: EvalSet, index: int, scan: LayerScan) -> dict[str, Any]:
    """Every swept layer's probe on every token of one answer (layer x token heatmap data)."""

    layers = sorted(scan.probes)
    item = prepare(lm, [eval_set.prepared[index].generation], layers)[0]
    result = layer_token_matrix({x: item.acts.hidden[x] for x in layers}, scan.probes)
    result["tokens"] = list(item.acts.trace.texts)
    return result
