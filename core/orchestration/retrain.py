"""Retrain and re-score: the team's labels -> a new probe version, measured against the active one.

The work runs in a separate worker process (`python -m core worker --run N`, started by
`launch`), so it survives page reloads and is isolated from the web server: a crash or a
`kill -9` loses only the run. The probe directory is written under a temporary name and
renamed, and the probe row is registered in the *same transaction* that marks the run
succeeded, so a killed run never leaves a half-registered version.

Like the CLI and the seed, this module orchestrates core and db, so it imports db lazily.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.base.errors import UserError
from core.base.progress import CancelToken, Cancelled, ProgressFn, check, report

HEARTBEAT_SECONDS = 1.0
RESCORE_CHUNK = 64  # generations per stored batch: a cancel keeps what is done


@dataclass
class RetrainParams:
    """What a retrain is asked to do; stored on the run row as JSON."""

    model: str | None = None  # None: PROBELENS_MODEL or the embedded default
    layer: int | None = None  # None: the model's default probe layer
    datasets: list[str] | None = None  # None: every dataset
    sources: list[str] = field(default_factory=lambda: ["gold", "majority"])
    epochs: int | None = None
    lr: float = 1e-3
    seed: int = 0
    val_fraction: float = 0.2  # only when no answer is stored in the validation split
    n_boot: int = 1000
    activate: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetrainParams:
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        params = cls(**known)
        params.validate()
        return params

    def validate(self) -> None:
        if self.layer is not None and (not isinstance(self.layer, int) or self.layer < 0):
            raise UserError(f"layer must be a non-negative integer, got {self.layer!r}")
        if self.epochs is not None and (not isinstance(self.epochs, int) or not 1 <= self.epochs <= 10_000):
            raise UserError(f"epochs must be between 1 and 10000, got {self.epochs!r}")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr <= 1):
            raise UserError(f"learning rate must be in (0, 1], got {self.lr!r}")
        if not 0 < self.val_fraction < 1:
            raise UserError(f"validation fraction must be in (0, 1), got {self.val_fraction!r}")
        if not self.sources or any(s not in ("gold", "majority") for s in self.sources):
            raise UserError("label sources must be 'gold' and/or 'majority'")
        if not 0 <= int(self.n_boot) <= 100_000:
            raise UserError("bootstrap resamples must be between 0 and 100000")


# --- choosing data -------------------------------------------------------------------------


def _choose_splits(labelled: list, val_fraction: float) -> tuple[list, list, str]:
    """Train on the stored train split, validate on the stored validation split.

    The split is a property of each stored answer, so every run (and the active probe's
    comparison) is measured on the same answers. Without any stored validation answers a
    stable hash of each answer's id decides instead (also fixed across runs). Test-split
    answers are never used here: they stay held out.
    """
    from core.probes.training_set import split_by_generation

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


def label_summary(database, datasets: list[str] | None = None,
                  sources: tuple[str, ...] = ("gold", "majority")) -> dict[str, Any]:
    """How many answers the label rule would train and validate on (shown before a retrain)."""
    from db.labels import labelled_generations

    with database.sessions() as session:
        labelled = labelled_generations(session, datasets=datasets, sources=sources)
    out: dict[str, Any] = {"answers": len(labelled), "by_split": {}, "by_source": {}}
    for x in labelled:
        out["by_split"][x.split] = out["by_split"].get(x.split, 0) + 1
        out["by_source"][x.source] = out["by_source"].get(x.source, 0) + 1
    out["hallucinated_spans"] = sum(
        1 for x in labelled for s in x.generation.spans if s.label in ("Not Supported", "Insufficient Information")
    )
    return out


# --- the retrain itself --------------------------------------------------------------------


@dataclass
class RetrainOutcome:
    version: int
    probe_id: int
    metrics: dict[str, Any]
    comparison: dict[str, Any] | None
    timings: dict[str, float]


def probes_dir() -> Path:
    from core.orchestration.seed import probes_dir as configured

    return configured()


def _comparison(database, lm, val_labelled, val_items, probe, layer, params, progress, cancel) -> dict | None:
    """The active probe against the new one on the same validation answers (paired bootstrap)."""
    from core.base.errors import ModelMismatchError
    from core.analysis.comparison import compare_probes
    from core.probes.files import load_probe
    from core.probes.pipeline import item_scores, prepare
    from db.probes import active_probe

    with database.sessions() as session:
        active = active_probe(session)
        if active is None:
            return None
        active_version, active_path = active.version, active.artifact_path
    if not val_items:
        return {"against": active_version, "skipped": "no validation answers"}
    try:
        old_probe, old_config = load_probe(active_path, expect_model_id=lm.model_id,
                                           expect_tokenizer_hash=lm.tokenizer_hash,
                                           expect_hidden_size=lm.hidden_size)
    except (UserError, ModelMismatchError) as exc:
        return {"against": active_version, "skipped": f"active probe v{active_version} not comparable: {exc}"}
    old_layer = lm.check_layer(old_config.layer)
    old_items = val_items if old_layer == layer else prepare(
        lm, [x.generation for x in val_labelled], [old_layer], progress=progress, cancel=cancel)
    report(progress, "compare", 0, 1, f"v{active_version} vs new, {params.n_boot} bootstrap resamples")
    result = compare_probes(item_scores(old_items, old_probe, old_layer), item_scores(val_items, probe, layer),
                            n_boot=int(params.n_boot), seed=params.seed, progress=progress, cancel=cancel)
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
    from core.analysis.metrics import evaluate_items
    from core.probes.config import ProbeConfig
    from core.probes.files import save_probe
    from core.probes.linear import TrainConfig, train_probe
    from core.probes.training_set import build_training_set
    from core.probes.pipeline import _training_examples, data_hash, item_scores, prepare
    from db.labels import labelled_generations

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
    train_items, val_items = items[:len(train_l)], items[len(train_l):]
    timings["activations_s"] = time.perf_counter() - t

    t = time.perf_counter()
    config = TrainConfig(lr=float(params.lr), epochs=params.epochs, seed=int(params.seed))
    data = build_training_set(_training_examples(train_items, layer), span_weight=config.span_weight)
    probe, history = train_probe(data, config, progress=progress, cancel=cancel)
    timings["train_s"] = time.perf_counter() - t

    t = time.perf_counter()
    report(progress, "evaluate", 0, 1, "metrics on the validation answers")
    metrics = evaluate_items(item_scores(val_items, probe, layer)) if val_items else {}
    metrics["train"] = evaluate_items(item_scores(train_items, probe, layer))
    metrics.update({
        "split": "validation", "split_rule": split_how, "layer": layer, "model": lm.model_id,
        "n_train": len(train_items), "n_validation": len(val_items),
        "label_sources": {s: sum(1 for x in labelled if x.source == s) for s in ("gold", "majority")},
        "validation_ids": [x.row_id for x in val_l],
        "final_loss": history[-1]["loss"] if history else None,
    })
    comparison = _comparison(database, lm, val_l, val_items, probe, layer, params, progress, cancel)
    if comparison is not None:
        metrics["comparison"] = comparison
    timings["evaluate_s"] = time.perf_counter() - t
    check(cancel)

    report(progress, "register", 0, 1, "saving the probe")
    outcome = _register(database, lm, probe, layer, metrics, data_hash(train_items), params, config,
                        run_id=run_id, created_by=created_by, timings=timings, started=t0)
    report(progress, "register", 1, 1, f"registered v{outcome.version}")
    return outcome


def _register(database, lm, probe, layer, metrics, snapshot, params, config, *, run_id, created_by, timings,
              started) -> RetrainOutcome:
    """Directory and row in one step: renamed into place inside the transaction that commits
    the row (and marks the run succeeded), removed again if that transaction fails."""
    from core.probes.config import ProbeConfig
    from core.probes.files import save_probe
    from db.models import User
    from db.probes import active_probe, next_version, register_probe
    from db.train_runs import finish

    root = probes_dir()
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".staging-run-{run_id or os.getpid()}-{time.time_ns()}"
    target: Path | None = None
    try:
        with database.sessions() as session, session.begin():
            version = next_version(session)
            active = active_probe(session)
            probe_config = ProbeConfig(
                model_id=lm.model_id, tokenizer_hash=lm.tokenizer_hash, layer=layer, hidden_size=lm.hidden_size,
                training_data_hash=snapshot, metrics=metrics, version=version,
                train_config={**config.to_dict(), "val_fraction": params.val_fraction,
                              "datasets": params.datasets, "sources": params.sources},
            )
            save_probe(staging, probe, probe_config)
            if run_id is not None:
                from db.train_runs import get_run

                if get_run(session, run_id).status != "running":
                    raise UserError(f"run {run_id} was stopped meanwhile ({get_run(session, run_id).error or 'no reason'})")
            target = root / f"v{version}"
            if target.exists():
                # left by a run killed between rename and commit: no row points at it
                shutil.rmtree(target)
            os.replace(staging, target)
            actor = session.get(User, created_by) if created_by else None
            row = register_probe(session, artifact_dir=str(target), config=probe_config, version=version,
                                 parent_version=active.version if active else None, created_by=actor,
                                 activate=params.activate)
            timings["total_s"] = time.perf_counter() - started
            if run_id is not None:
                finish(session, run_id, "succeeded", probe_id=row.id, timings=timings,
                       message=f"registered v{version}")
            probe_id = row.id
    except BaseException:
        if target is not None and target.exists():
            shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return RetrainOutcome(version, probe_id, metrics, metrics.get("comparison"), timings)


# --- re-scoring stored answers with one probe version ---------------------------------------


def rescore(database, lm, version: int, *, only_missing: bool = True, progress: ProgressFn | None = None,
            cancel: CancelToken | None = None) -> dict[str, int]:
    """Store probe `version`'s per-token scores for every stored answer, so heatmaps show it.

    Answers imported without tokens get their tokens (and log-probs, entropies) stored too,
    which makes them editable token by token. Work is stored in chunks: a cancel keeps
    what is done, and a second call only does what is missing.
    """
    from sqlalchemy import select

    from core.engine.activations import extract_activations
    from core.probes.files import load_probe
    from core.base.types import TokenTrace
    from db.generations import set_trace, to_core, trace_of
    from db.models import Generation, Prediction
    from db.predictions import store_scores
    from db.probes import get_probe

    with database.sessions() as session:
        row = get_probe(session, version)
        path, probe_id = row.artifact_path, row.id
        ids = list(session.scalars(select(Generation.id).order_by(Generation.id)))
        if only_missing:
            done_ids = set(session.scalars(select(Prediction.generation_id).where(Prediction.probe_id == probe_id)))
            ids = [i for i in ids if i not in done_ids]
    probe, config = load_probe(path, expect_model_id=lm.model_id, expect_tokenizer_hash=lm.tokenizer_hash,
                               expect_hidden_size=lm.hidden_size)
    layer = lm.check_layer(config.layer)
    counts = {"scored": 0, "tokens_added": 0, "total": len(ids)}
    report(progress, "rescore", 0, len(ids), f"{len(ids)} answers to score with v{version}")
    for start in range(0, len(ids), RESCORE_CHUNK):
        check(cancel)
        chunk = ids[start:start + RESCORE_CHUNK]
        with database.sessions() as session:
            rows = [session.get(Generation, i) for i in chunk]
            gens, had_trace = [], []
            for r in rows:
                if r is None:
                    continue
                g, trace = to_core(r), trace_of(r)
                if trace is not None:
                    g.extra["tokens"] = {"ids": list(trace.token_ids)}
                gens.append((r.id, g))
                had_trace.append(trace is not None)
        acts = extract_activations(lm, [g for _i, g in gens], [layer], use_cache=True, cancel=cancel)
        with database.sessions() as session, session.begin():
            for (row_id, _g), a, has in zip(gens, acts, had_trace):
                r = session.get(Generation, row_id)
                if r is None:
                    continue  # deleted meanwhile
                scores = np.asarray(probe.predict(a.hidden[layer]), dtype=np.float64).reshape(-1).tolist()
                if not has:
                    set_trace(r, TokenTrace(a.token_ids, a.texts, a.offsets, a.logprobs, a.entropies))
                    counts["tokens_added"] += 1
                store_scores(session, version, row_id, scores)
                counts["scored"] += 1
        report(progress, "rescore", min(start + len(chunk), len(ids)), len(ids), f"v{version}")
    return counts


def promote(database, version: int, actor_id: int | None) -> None:
    """Make `version` the active probe (immediately); its scores are filled by a rescore run."""
    from core.probes.files import load_probe
    from db.models import User
    from db.probes import get_probe, set_active

    with database.sessions() as session, session.begin():
        row = get_probe(session, version)
        load_probe(row.artifact_path)  # refuse a version whose files are gone or damaged
        set_active(session, version, session.get(User, actor_id) if actor_id else None)


def rollback_target(database) -> int | None:
    """The version that was active before the current one (the event log knows)."""
    from sqlalchemy import select

    from db.models import Event
    from db.probes import active_probe, list_probes

    with database.sessions() as session:
        current = active_probe(session)
        if current is None:
            return None
        events = session.scalars(select(Event).where(Event.action == "probe.activate").order_by(Event.id.desc()))
        for event in events:
            before = (event.before or {}).get("version")
            after = (event.after or {}).get("version")
            if after == current.version and before and before != current.version:
                existing = {p.version for p in list_probes(session)}
                if before in existing:
                    return int(before)
        return current.parent_version


def upload_probe(database, lm, data: bytes, actor_id: int | None) -> int:
    """Register an uploaded probe zip as a new (inactive) version; checked against `lm` first."""
    from core.probes.archive import unpack_probe
    from db.models import User
    from db.probes import next_version, register_probe

    root = probes_dir()
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".staging-upload-{os.getpid()}-{time.time_ns()}"
    target: Path | None = None
    try:
        _probe, config = unpack_probe(data, staging, expect_model_id=lm.model_id,
                                      expect_tokenizer_hash=lm.tokenizer_hash, expect_hidden_size=lm.hidden_size)
        lm.check_layer(config.layer)
        with database.sessions() as session, session.begin():
            version = next_version(session)
            target = root / f"v{version}"
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
            actor = session.get(User, actor_id) if actor_id else None
            config.metrics = {**(config.metrics or {}), "uploaded_as_version_of": config.version}
            register_probe(session, artifact_dir=str(target), config=config, version=version, created_by=actor)
        return version
    except BaseException:
        if target is not None and target.exists():
            shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


# --- the worker process ------------------------------------------------------------------------


class _Beat:
    """Latest progress in memory; a thread writes it with a heartbeat and reads the cancel flag."""

    def __init__(self, database, run_id: int, cancel: CancelToken) -> None:
        self.database, self.run_id, self.cancel = database, run_id, cancel
        self.stage, self.fraction, self.message = "start", 0.0, ""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"heartbeat-{run_id}", daemon=True)

    # Overall progress: stages take these shares of the bar.
    SHARES = {"load": (0.0, 0.05), "labels": (0.05, 0.07), "extract": (0.07, 0.5), "train": (0.5, 0.9),
              "evaluate": (0.9, 0.92), "compare": (0.92, 0.99), "bootstrap": (0.92, 0.99),
              "register": (0.99, 1.0), "rescore": (0.05, 1.0), "generate": (0.05, 1.0)}

    def __call__(self, stage: str, done: int, total: int, message: str = "") -> None:
        lo, hi = self.SHARES.get(stage, (self.fraction, self.fraction))
        part = min(1.0, done / total) if total else 0.0
        self.stage, self.fraction = stage, max(self.fraction if stage == self.stage else 0.0, lo + (hi - lo) * part)
        self.message = f"{stage}: {done}/{total}" + (f" · {message}" if message else "")

    def _loop(self) -> None:
        from db.train_runs import beat

        while not self.stop.wait(HEARTBEAT_SECONDS):
            self.write(beat)

    def write(self, beat) -> None:
        try:
            with self.database.sessions() as session, session.begin():
                if beat(session, self.run_id, stage=self.stage, progress=self.fraction, message=self.message):
                    self.cancel.cancel()
        except Exception:  # noqa: BLE001 - a busy database must not kill the work; next beat retries
            traceback.print_exc()


def execute_run(database, run_id: int, *, claimed: bool = False) -> str:
    """One run from start to its final status (`claimed`: this process already holds it)."""
    from core.engine.model import lazy_model
    from db.train_runs import finish, get_run, mark_started

    with database.sessions() as session, session.begin():
        run = get_run(session, run_id) if claimed else mark_started(session, run_id, os.getpid())
        kind, params_json, created_by = run.kind, dict(run.params or {}), run.created_by
    cancel = CancelToken()
    beat = _Beat(database, run_id, cancel)
    beat.thread.start()
    started = time.perf_counter()
    status, error = "failed", None
    try:
        beat("load", 0, 1, "loading the model")
        lm = lazy_model(params_json.get("model"))  # weights only if some hidden states are not cached
        beat("load", 1, 1, lm.model_id)
        check(cancel)
        if kind == "retrain":
            params = RetrainParams.from_dict(params_json)
            retrain(database, lm, params, run_id=run_id, created_by=created_by, progress=beat, cancel=cancel)
            status = "succeeded"  # the row was finished inside the registering transaction
            return status
        if kind == "rescore":
            counts = rescore(database, lm, int(params_json["version"]), progress=beat, cancel=cancel)
            status = "succeeded"
            with database.sessions() as session, session.begin():
                finish(session, run_id, "succeeded", timings={"total_s": time.perf_counter() - started},
                       message=f"scored {counts['scored']} answers with v{params_json['version']}"
                               + (f"; stored tokens of {counts['tokens_added']}" if counts["tokens_added"] else ""))
            return status
        if kind == "generate":
            from core.orchestration.batch import BatchParams, run_batch

            result = run_batch(database, lm, BatchParams.from_dict(params_json), created_by=created_by,
                               progress=beat, cancel=cancel)
            status = "succeeded"
            with database.sessions() as session, session.begin():
                finish(session, run_id, "succeeded", timings={"total_s": time.perf_counter() - started},
                       message=f"generated {result['answers']} answers ({result['tokens']} tokens)"
                               + (f", scored with v{result['probe_version']}" if result["probe_version"] else "")
                               + (f"; skipped {len(result['skipped'])} that could not be stored (first: prompt "
                                  f"{result['skipped'][0][0]}: {result['skipped'][0][1]})" if result["skipped"] else ""))
            return status
        raise UserError(f"unknown run kind {kind!r}")
    except Cancelled:
        status, error = "cancelled", None
    except UserError as exc:
        status, error = "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - the run row must say why
        traceback.print_exc()
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        beat.stop.set()
        beat.thread.join(timeout=5)
        if status != "succeeded":
            with database.sessions() as session, session.begin():
                if get_run(session, run_id).status in ("queued", "running"):
                    finish(session, run_id, status, error=error, message=beat.message,
                           timings={"total_s": time.perf_counter() - started})
    return status


IDLE_SECONDS_ENV = "PROBELENS_WORKER_IDLE_SECONDS"
IDLE_POLL_SECONDS = 0.2
IDLE_FRESH_SECONDS = 3.0


def idle_seconds() -> float:
    """How long a worker stays warm after its run, waiting for the next (0: exit at once)."""
    try:
        return max(0.0, float(os.environ.get(IDLE_SECONDS_ENV, "300")))
    except ValueError:
        return 300.0


def _idle_dir(database) -> Path:
    import hashlib

    url = database.engine.url.render_as_string(hide_password=False)
    return log_dir() / "idle" / hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def idle_workers(database) -> list[int]:
    """Pids of warm workers of this database that are waiting right now."""
    from db.train_runs import process_alive

    folder = _idle_dir(database)
    if not folder.is_dir():
        return []
    alive = []
    for marker in folder.iterdir():
        try:
            fresh = time.time() - marker.stat().st_mtime < IDLE_FRESH_SECONDS
            pid = int(marker.name)
        except (OSError, ValueError):
            continue
        if fresh and process_alive(pid):
            alive.append(pid)
        elif not fresh:
            marker.unlink(missing_ok=True)
    return alive


def worker_main(database, run_id: int | None) -> str:
    """A worker process: its own run first, then stay warm (model and imports loaded) for the
    next unassigned run, so a retrain after a few corrections does not pay the start-up again."""
    from db.train_runs import claim, next_unassigned

    status = "idle"
    me = os.getpid()
    if run_id is not None:
        with database.sessions() as session, session.begin():
            mine = claim(session, run_id, me)
        if mine:
            status = execute_run(database, run_id, claimed=True)
    folder = _idle_dir(database)
    marker = folder / str(me)
    deadline = time.monotonic() + idle_seconds()
    try:
        while time.monotonic() < deadline:
            folder.mkdir(parents=True, exist_ok=True)
            marker.touch()
            with database.sessions() as session, session.begin():
                candidate = next_unassigned(session)
                taken = candidate is not None and claim(session, candidate, me, only_unassigned=True)
            if taken:
                marker.unlink(missing_ok=True)
                status = execute_run(database, candidate, claimed=True)
                deadline = time.monotonic() + idle_seconds()
                continue
            time.sleep(IDLE_POLL_SECONDS)
    except Exception:  # noqa: BLE001 - the database went away (or similar): stop being warm
        traceback.print_exc()
    finally:
        marker.unlink(missing_ok=True)
    return status


def log_dir() -> Path:
    from core.engine.model import cache_root

    return cache_root() / "runs"


def launch(database, kind: str, params: dict[str, Any], actor_id: int | None) -> int:
    """Create the run row (refused if one is running) and start its worker process."""
    from db.models import User
    from db.train_runs import create_run, get_run

    if kind == "retrain":
        RetrainParams.from_dict(params)  # bad options: one message, no row
    with database.sessions() as session, session.begin():
        actor = session.get(User, actor_id) if actor_id else None
        run_id = create_run(session, kind, params, actor).id
    if idle_workers(database):
        # a warm worker polls for unassigned runs; give it a moment before starting a new one
        deadline = time.monotonic() + 2 * IDLE_FRESH_SECONDS
        while time.monotonic() < deadline:
            with database.sessions() as session:
                if get_run(session, run_id).status != "queued":
                    return run_id
            time.sleep(0.05)
    logs = log_dir()
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DATABASE_URL": database.engine.url.render_as_string(hide_password=False)}
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    with open(logs / f"run-{run_id}.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "core", "worker", "--run", str(run_id)], cwd=root, env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    _CHILDREN[run_id] = proc
    with database.sessions() as session, session.begin():
        run = get_run(session, run_id)
        if run.pid is None:
            run.pid = proc.pid
    return run_id


_CHILDREN: dict[int, subprocess.Popen] = {}  # reaped by db.train_runs.process_alive / poll


# --- views for the Probes page and the CLI ----------------------------------------------------


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def versions_table(database) -> list[dict[str, Any]]:
    """One row per probe version, newest first: what a person compares before promoting."""
    from db.probes import list_probes

    rows = []
    with database.sessions() as session:
        for p in list_probes(session):
            m = p.metrics or {}
            comparison = m.get("comparison") or {}
            delta = ((comparison.get("span_max") or {}).get("auc") or {})
            ci = delta.get("ci") or [None, None]
            rows.append({
                "version": p.version,
                "active": p.active,
                "created": p.created_at.strftime("%Y-%m-%d %H:%M") if p.created_at else "",
                "layer": p.layer,
                "train answers": m.get("n_train"),
                "validation answers": m.get("n_validation"),
                "token AUC": _num((m.get("token") or {}).get("auc")),
                "span_max AUC": _num((m.get("span_max") or {}).get("auc")),
                "recall@10%FPR": _num((m.get("span_max") or {}).get("recall_at_fpr_0.1")),
                "vs": comparison.get("against"),
                "Δ span_max AUC": _num(delta.get("delta")),
                "Δ CI low": _num(ci[0]) if len(ci) > 0 else None,
                "Δ CI high": _num(ci[1]) if len(ci) > 1 else None,
                "data hash": (p.training_data_hash or "")[:12],
                "parent": p.parent_version,
            })
    return rows


def comparison_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The paired comparison stored with a version, flat: level x metric with delta and CI."""
    comparison = (metrics or {}).get("comparison") or {}
    rows = []
    for level in ("token", "span_max"):
        for metric in ("auc", "recall_at_fpr_0.1"):
            row = (comparison.get(level) or {}).get(metric)
            if not row:
                continue
            ci = row.get("ci") or [None, None]
            rows.append({"level": level, "metric": metric, "active": _num(row.get("a")), "new": _num(row.get("b")),
                         "delta": _num(row.get("delta")), "CI low": _num(ci[0]), "CI high": _num(ci[1]),
                         "P(new better)": _num(row.get("prob_b_better"))})
    return rows


def tokenise_answer(database, lm, generation_id: int):
    """Store the tokens (and log-probs, entropies) of an answer imported without them, so it
    can be labelled token by token; returns the trace. One teacher-forced pass, no probe."""
    from core.engine.activations import extract_activations
    from core.base.types import TokenTrace
    from db.generations import get_generation, set_trace, to_core, trace_of

    with database.sessions() as session:
        row = get_generation(session, generation_id)
        existing = trace_of(row)
        if existing is not None:
            return existing
        gen = to_core(row)
    acts = extract_activations(lm, [gen], [lm.default_layer], use_cache=True)[0]
    trace = TokenTrace(acts.token_ids, acts.texts, acts.offsets, acts.logprobs, acts.entropies)
    with database.sessions() as session, session.begin():
        set_trace(get_generation(session, generation_id), trace)
    return trace
