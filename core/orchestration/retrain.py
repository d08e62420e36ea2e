"""Retrain: the team's labels -> a new probe version, measured against the active one.

Trains on the stored *train* split and measures on the stored *validation* split (a fixed
split by answer, so every version is compared on the same answers); *test* is never used.
Runs inside a worker (`core.orchestration.runs`); registration is atomic (`registry`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.analysis.comparison import compare_probes
from core.base.errors import UserError
from core.base.progress import CancelToken, ProgressFn, check, report
from core.base.types import LABEL_VALUES
from core.orchestration.probe_cache import version_dir
from core.orchestration.registry import load_version, register_version
from core.probes.config import ProbeConfig
from core.probes.files import load_probe
from core.probes.kinds import KINDS, ProbeKind, TrainOptions, fresh_probe, kind_of
from core.probes.metrics import evaluate_items
from core.probes.pipeline import data_hash, labels_hash, prepare
from core.probes.stored_metrics import section
from core.probes.training_set import split_by_generation
from db.labels import DEFAULT_LABEL_SOURCES, LABEL_SOURCES, labelled_generations
from db.models import RunStatus
from db.probes import active_probe
from db.train_runs import finish, get_run


@dataclass
class RetrainParams:
    """What a retrain is asked to do; stored on the run row as JSON."""

    model: str | None = None  # None: PROBELENS_MODEL or the embedded default
    layer: int | None = None  # None: the model's default probe layer
    datasets: list[str] | None = None  # None: every dataset
    sources: list[str] = field(default_factory=lambda: list(DEFAULT_LABEL_SOURCES))
    epochs: int | None = None
    lr: float = 1e-3
    seed: int = 0
    val_fraction: float = 0.2  # only when no answer is stored in the validation split
    n_boot: int = 1000
    activate: bool = False
    kind: str = "linear"  # a name in core.probes.kinds.KINDS; lora_* and kl_weight are LoRA's settings
    lora_rank: int = 16
    lora_first_layer: int = 0
    lora_last_layer: int | None = None  # None: the probe's layer
    kl_weight: float = 10.0
    checkpoint_every: int | None = None  # LoRA: steps between scored checkpoints (None: 4 per epoch)

    def train_options(self) -> TrainOptions:
        """The kind-neutral training settings; the kind reads its own from `extra`."""
        return TrainOptions(
            lr=float(self.lr),
            epochs=self.epochs,
            seed=int(self.seed),
            extra={
                "rank": self.lora_rank,
                "first_layer": self.lora_first_layer,
                "last_layer": self.lora_last_layer,
                "kl_weight": self.kl_weight,
                "checkpoint_every": self.checkpoint_every,
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetrainParams:
        """A run row's params, read back as `start_retrain` checked them when the run was created."""
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def validate(self) -> None:
        if self.layer is not None and (not isinstance(self.layer, int) or self.layer < 0):
            raise UserError(f"layer must be a non-negative integer, got {self.layer!r}")
        if self.epochs is not None and (not isinstance(self.epochs, int) or not 1 <= self.epochs <= 10_000):
            raise UserError(f"epochs must be between 1 and 10000, got {self.epochs!r}")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr <= 1):
            raise UserError(f"learning rate must be in (0, 1], got {self.lr!r}")
        if not 0 < self.val_fraction < 1:
            raise UserError(f"validation fraction must be in (0, 1), got {self.val_fraction!r}")
        if not self.sources or any(s not in LABEL_SOURCES for s in self.sources):
            raise UserError("label sources must be one or more of 'gold', 'majority' and 'judge'")
        if not 0 <= int(self.n_boot) <= 100_000:
            raise UserError("bootstrap resamples must be between 0 and 100000")
        if self.kind not in KINDS:
            raise UserError(f"probe kind must be one of {', '.join(map(repr, KINDS))}, got {self.kind!r}")
        KINDS[self.kind].check_options(self.train_options())


# --- choosing data -------------------------------------------------------------------------


def _choose_splits(labelled: list, val_fraction: float) -> tuple[list, list, str]:
    """Train on the stored train split, validate on the stored validation split.

    The split is a property of each stored answer, so every run (and the active probe's
    comparison) is measured on the same answers. Without any stored validation answers a
    stable hash of each answer's id decides instead (also fixed across runs). Test-split
    answers are never used here: they stay held out.
    """

    train = [x for x in labelled if x.split == "train"]
    val = [x for x in labelled if x.split == "validation"]
    how = "stored validation split"
    if not val and train:
        held = split_by_generation([x.generation.id for x in train], val_fraction)
        val = [x for x, h in zip(train, held) if h]
        train = [x for x, h in zip(train, held) if not h]
        how = f"hash of each answer's id ({val_fraction:.0%} of the train split; no stored validation answers)"
    if not train:
        raise UserError("no labelled answers in the train split: label some answers (Annotate) or import labels")
    return train, val, how


def label_summary(
    database, datasets: list[str] | None = None, sources: tuple[str, ...] = DEFAULT_LABEL_SOURCES
) -> dict[str, Any]:
    """How many answers the label rule would train and validate on (shown before a retrain),
    what the validation set holds, and hashes of the train and validation labels."""

    with database.sessions() as session:
        labelled = labelled_generations(session, datasets=datasets, sources=sources)
    out: dict[str, Any] = {"answers": len(labelled), "by_split": {}, "by_source": {}}
    for x in labelled:
        out["by_split"][x.split] = out["by_split"].get(x.split, 0) + 1
        out["by_source"][x.source] = out["by_source"].get(x.source, 0) + 1
    out["hallucinated_spans"] = sum(1 for x in labelled for s in x.generation.spans if LABEL_VALUES.get(s.label) == 1)
    try:
        train, val, how = _choose_splits(labelled, RetrainParams().val_fraction) if labelled else ([], [], "")
    except UserError:  # labelled answers, none in the train split: the retrain says why
        train, val, how = [], [x for x in labelled if x.split == "validation"], "stored validation split"
    # what a retrain trains and validates on: the figures above the guard and the guard itself
    # read these two counts (one computation), never the stored splits' own counts
    out["used"] = {"train": len(train), "validation": len(val), "how": how}
    out["validation"] = {
        "answers": len(val),
        "hallucinated": sum(1 for x in val for s in x.generation.spans if LABEL_VALUES.get(s.label) == 1),
        "supported": sum(1 for x in val for s in x.generation.spans if LABEL_VALUES.get(s.label) == 0),
    }
    out["train_hash"] = labels_hash([x.generation for x in train]) if train else None
    out["validation_hash"] = labels_hash([x.generation for x in val]) if val else None
    return out


def unchanged_since(database, params: RetrainParams, summary: dict[str, Any]) -> int | None:
    """The newest version trained on exactly these labels with these settings, if the newest is one."""
    from db.probes import list_probes

    with database.sessions() as session:
        probes = list_probes(session)
        newest = max(probes, key=lambda p: p.version) if probes else None
        if newest is None or not newest.training_data_hash:
            return None
        version, train_hash = newest.version, newest.training_data_hash
        metrics = section(newest.metrics)
        try:
            config = load_probe(version_dir(session, version))[1]
        except UserError:
            return None
    trained = config.train_config or {}
    kind = kind_of(params.kind)
    head = kind.head_options(params.train_options())  # what train_config records (LoRA epochs: in `lora`)
    same_settings = (
        trained.get("lr") == head.lr
        and trained.get("seed") == head.seed
        and trained.get("epochs") == head.epochs
        and (trained.get("datasets") or None) == (params.datasets or None)
        and sorted(trained.get("sources") or []) == sorted(params.sources)
        and params.layer in (None, config.layer)
        and config.kind == params.kind
        and all(getattr(config, k) == v for k, v in kind.config_fields(params.train_options()).items())
    )
    same_labels = train_hash == summary.get("train_hash") and metrics.get("validation_data_hash") in (
        None,
        summary.get("validation_hash"),
    )
    return version if same_settings and same_labels else None


# --- the retrain itself --------------------------------------------------------------------


@dataclass
class RetrainOutcome:
    probe_version: int
    probe_id: int
    metrics: dict[str, Any]
    comparison: dict[str, Any] | None
    timings: dict[str, float]


def _comparison(database, lm, val_labelled, val_items, new_scores, layer, params, progress, cancel) -> dict | None:
    """The active probe against the new one on the same validation answers (paired bootstrap)."""

    with database.sessions() as session:
        active = active_probe(session)
        if active is None:
            return None
        active_version = active.version
    if not val_items:
        return {"against": active_version, "skipped": "no validation answers"}
    try:
        old = load_version(database, lm, active_version)
    except UserError as exc:
        return {"against": active_version, "skipped": f"active probe v{active_version} not comparable: {exc}"}
    old_layer = old.layer
    old_items = (
        val_items
        if old_layer == layer
        else prepare(lm, [x.generation for x in val_labelled], [old_layer], progress=progress, cancel=cancel)
    )
    report(progress, "compare", 0, 1, f"v{active_version} vs new, {params.n_boot} bootstrap resamples")
    result = compare_probes(
        old.item_scores(lm, old_items, progress=progress, stage="compare"),  # a LoRA version: a pass per answer
        new_scores,
        n_boot=int(params.n_boot),
        seed=params.seed,
        progress=progress,
        cancel=cancel,
    )
    result["against"] = active_version
    return result


def retrain(
    database,
    lm,
    params: RetrainParams,
    *,
    run_id: int | None = None,
    created_by: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> RetrainOutcome:
    """Labels -> activations (cached) -> probe -> metrics + comparison -> registered version."""

    params.validate()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    report(progress, "labels", 0, 1, "reading the team's labels")
    with database.sessions() as session:
        labelled = labelled_generations(session, datasets=params.datasets, sources=params.sources)
    train_l, val_l, split_how = _choose_splits(labelled, params.val_fraction)
    timings["labels_s"] = time.perf_counter() - t0
    check(cancel)

    layer = lm.check_layer(params.layer if params.layer is not None else lm.default_layer)
    t = time.perf_counter()
    items = prepare(lm, [x.generation for x in train_l + val_l], [layer], progress=progress, cancel=cancel)
    train_items, val_items = items[: len(train_l)], items[len(train_l) :]
    timings["activations_s"] = time.perf_counter() - t

    t = time.perf_counter()
    kind, options = kind_of(params.kind), params.train_options()
    trained = kind.train(lm, train_items, layer, options, progress=progress, cancel=cancel, validation=val_items)
    probe_config = _probe_config(lm, layer, kind, options, params)
    fresh = fresh_probe(trained, probe_config)  # measured before it is registered
    timings["train_s"] = time.perf_counter() - t

    t = time.perf_counter()
    scored = len(val_items) + len(train_items)  # every answer scored, counted in the "evaluate" stage
    val_scores = fresh.item_scores(lm, val_items, progress=progress, counted=(0, scored)) if val_items else []
    metrics = evaluate_items(val_scores) if val_items else {}
    metrics["train"] = evaluate_items(
        fresh.item_scores(lm, train_items, progress=progress, counted=(len(val_items), scored))
    )
    metrics["kind"] = params.kind
    metrics.update(
        {
            "split": "validation",
            "split_rule": split_how,
            "layer": layer,
            "model": lm.model_id,
            "n_train": len(train_items),
            "n_validation": len(val_items),
            "label_sources": {
                s: sum(1 for x in labelled if x.source == s)
                for s in LABEL_SOURCES
                if s in DEFAULT_LABEL_SOURCES or s in params.sources
            },
            "validation_ids": [x.row_id for x in val_l],
            "validation_data_hash": labels_hash([x.generation for x in val_l]) if val_l else None,
            "final_loss": trained.history[-1]["loss"] if trained.history else None,
            **trained.metrics,
        }
    )
    comparison = _comparison(database, lm, val_l, val_items, val_scores, layer, params, progress, cancel)
    if comparison is not None:
        metrics["comparison"] = comparison
    timings["evaluate_s"] = time.perf_counter() - t
    check(cancel)

    report(progress, "register", 0, 1, "saving the probe")
    outcome = _register(
        database,
        kind,
        trained,
        probe_config,
        metrics,
        data_hash(train_items),
        params,
        run_id=run_id,
        created_by=created_by,
        timings=timings,
        started=t0,
    )
    report(progress, "register", 1, 1, f"registered v{outcome.probe_version}")
    return outcome


def _probe_config(lm, layer: int, kind: ProbeKind, options: TrainOptions, params: RetrainParams) -> ProbeConfig:
    """The new version's config before its metrics, data hash and number are known."""
    return ProbeConfig(
        model_id=lm.model_id,
        tokenizer_hash=lm.tokenizer_hash,
        layer=layer,
        hidden_size=lm.hidden_size,
        train_config={
            **kind.head_options(options).head_config().to_dict(),  # what its (starting) head was fitted with
            "val_fraction": params.val_fraction,
            "datasets": params.datasets,
            "sources": params.sources,
        },
        kind=kind.name,
        **kind.config_fields(options),
    )


def _register(
    database, kind, trained, probe_config, metrics, snapshot, params, *, run_id, created_by, timings, started
) -> RetrainOutcome:
    """Register the new version; the run row is marked succeeded in the same transaction."""
    with database.sessions() as session:
        active = active_probe(session)
        parent = active.version if active else None

    def write(staging: Path, probe_version: int) -> ProbeConfig:
        config = dataclasses.replace(probe_config, training_data_hash=snapshot, metrics=metrics, version=probe_version)
        kind.save(staging, trained, config)
        return config

    def finish_run(session, row) -> None:
        if run_id is None:
            return
        run = get_run(session, run_id)
        if run.status != RunStatus.RUNNING:
            raise UserError(f"run {run_id} was stopped meanwhile ({run.error or 'no reason'})")
        timings["total_s"] = time.perf_counter() - started
        finish(
            session, run_id, RunStatus.SUCCEEDED, probe_id=row.id, timings=timings, message=f"registered v{row.version}"
        )

    done = register_version(
        database,
        write,
        created_by=created_by,
        activate=params.activate,
        parent_version=parent,
        in_transaction=finish_run,
        tag=f"run-{run_id}",
    )
    return RetrainOutcome(done.probe_version, done.probe_id, metrics, metrics.get("comparison"), timings)


# Measured by benchmarks/lora_train.py on this project's 2-core machine with the embedded model.
LORA_SECONDS_PER_ANSWER = 1.2  # 194 s for 163 answers (quiet machine, one epoch)
LINEAR_SECONDS = 5


def time_estimate(n_train: int) -> str:
    """What each kind costs for this many training answers, said before the press."""
    lora = max(1, round(n_train * LORA_SECONDS_PER_ANSWER / 60))
    return (
        f"Linear: about {LINEAR_SECONDS} s once hidden states are cached. LoRA: about {lora} min for "
        f"{n_train} training answers on 2 CPU cores (the model runs forward and backward over every answer)."
    )
