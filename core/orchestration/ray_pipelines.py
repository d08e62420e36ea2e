"""Bulk generation and re-scoring as Ray Data pipelines.

Prompts (or the ids of stored answers) are read in shards and passed with `map_batches` to an
actor pool of model replicas, one per GPU (or per CPU node), each running the batched engine.
The run's own Ray task drives the pipeline and writes results back to the database shard by
shard, idempotently: an answer already in the dataset is not stored again and scores are
upserted, so a retried shard or a re-run duplicates nothing. Replicas stop early when the run's
row asks for a cancel; the finished answers of the shard are still stored.

A replica's death fails the run (no restarts: a half-done shard is never silently redone
behind the run's back); the run's row says so and the next run starts fresh replicas.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import warnings
from dataclasses import asdict
from typing import Any

import numpy as np

from core.base.progress import Cancelled, CancelToken, ProgressFn, check, report
from core.base.types import Generation, Span, TokenTrace
from core.engine.batched import FinishedAnswer, SharedEngine, auto_batch_size
from core.engine.bulk import GeneratedAnswer, answer_from, bulk_requests
from core.engine.model import get_model
from core.orchestration.batch import AnswerWriter, BatchParams, kept_message
from core.orchestration.ray_cluster import cluster_shape, connect, replica_resources, worker_defaults
from core.orchestration.ray_progress import DriverProgress, ReplicaCounter, TokenTally
from core.orchestration.registry import load_version, load_version_or_none
from core.orchestration.rescore import ScoredAnswer, ids_to_score, read_answers, score_answers, store_scored
from core.text.readable import plural
from db.credentials import with_local_password, without_password
from db.models import RunStatus
from db.probes import active_probe
from db.train_runs import get_run

#: Largest shard, in multiples of the engine's batch: bigger shards keep the engine's slots full
#: (continuous batching refills them within a shard), smaller ones give finer progress.
SHARD_BATCHES = 4
DEFAULT_BATCH = 64
CANCEL_POLL_SECONDS = 1.0
PROMPT_ALLOWANCE = 256  # prompt tokens assumed when the KV-cache budget sets a replica's batch size
CALLS_PER_REPLICA = 2  # shards a replica works on at once, so its engine never drains between them
NO_RESTARTS: dict[str, Any] = {"max_restarts": 0, "max_task_retries": 0}  # extra ray_remote_args


def shard_size(total: int, replicas: int, batch: int) -> int:
    """About eight shards per replica (finer progress), at least one engine batch each (two
    shards in flight fill the engine), at most SHARD_BATCHES batches."""
    return max(batch, min(SHARD_BATCHES * batch, math.ceil(total / (8 * max(1, replicas)))))


class _RowCancel:
    """A replica's cancel token, set when the run's row asks for a cancel (or the run ended)."""

    def __init__(self, database_url: str, run_id: int | None) -> None:
        self.token = CancelToken()
        self.database_url, self.run_id = database_url, run_id
        self.done = threading.Event()
        if run_id is not None:
            threading.Thread(target=self._poll, args=(run_id,), name=f"cancel-{run_id}", daemon=True).start()

    def _poll(self, run_id: int) -> None:
        from db import open_database

        database = open_database(self.database_url, migrate=False)
        try:
            while not self.done.wait(CANCEL_POLL_SECONDS):
                with database.sessions() as session:
                    run = get_run(session, run_id)
                    if run.cancel_requested or run.status != RunStatus.RUNNING:
                        self.token.cancel()
                        return
        except Exception:
            return
        finally:
            database.dispose()


def encode_answer(answer: GeneratedAnswer) -> str:
    gen, trace = answer.generation, answer.trace
    return json.dumps(
        {
            "index": answer.index,
            "finish_reason": answer.finish_reason,
            "generation": {
                "conversation": gen.conversation,
                "model": gen.model,
                "extra": gen.extra,
                "spans": [asdict(s) for s in gen.spans],
            },
            "trace": trace.to_dict(),
        }
    )


def decode_answer(text: str) -> GeneratedAnswer:
    data = json.loads(text)
    g, t = data["generation"], data["trace"]
    generation = Generation(
        conversation=g["conversation"], model=g["model"], extra=g["extra"], spans=[Span(**s) for s in g["spans"]]
    )
    return GeneratedAnswer(int(data["index"]), generation, TokenTrace.from_dict(t), data["finish_reason"])


class GenerateReplica:
    """One model replica (its own process and device) answering shards of prompts.

    Ray Data hands it two shards at a time (two calls on two threads); both feed one engine
    (`SharedEngine`), so the engine's slots are refilled across shard boundaries instead of
    draining at the end of each shard."""

    def __init__(
        self,
        database_url: str,
        run_id: int | None,
        params: dict[str, Any],
        probe_version: int | None,
        tally: Any | None = None,
    ) -> None:
        from db import open_database

        worker_defaults()
        self.counter = ReplicaCounter(tally)  # tokens as they are made, for the driver's progress
        database_url = with_local_password(database_url)  # handed without its password
        self.database_url, self.run_id = database_url, run_id
        self.params = BatchParams.from_dict(params)
        self.lm = get_model(self.params.model)
        database = open_database(database_url, migrate=False)
        try:
            self.probe = load_version_or_none(database, self.lm, probe_version) if probe_version else None
        finally:
            database.dispose()
        size = self.params.batch_size or auto_batch_size(
            self.lm, PROMPT_ALLOWANCE + self.params.decoding.max_new_tokens
        )
        self.engine = SharedEngine(self.lm, size, self.probe.model if self.probe else None)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        probe, cancel = self.probe, _RowCancel(self.database_url, self.run_id)
        requests = list(
            bulk_requests(
                [json.loads(p) for p in batch["prompt"]],
                self.params.decoding,
                probe=probe,
                indices=[int(i) for i in batch["index"]],
                on_token=self.counter.token,
            )
        )
        finished: queue.Queue[FinishedAnswer] = queue.Queue()

        def ended(answer: FinishedAnswer) -> None:
            self.counter.ended(len(answer.tokens))
            finished.put(answer)

        for request in requests:
            self.engine.submit(request, ended)
        answers: list[FinishedAnswer] = []
        try:
            while len(answers) < len(requests):
                try:
                    answers.append(finished.get(timeout=CANCEL_POLL_SECONDS))
                except queue.Empty:
                    if cancel.token.cancelled:
                        for request in requests:
                            request.stop()
        finally:
            cancel.done.set()
            self.counter.flush()
        failed = [a.finish_reason for a in answers if a.finish_reason.startswith("error")]
        if failed:
            raise RuntimeError(f"the model replica failed: {failed[0]}")
        kept = [
            answer_from(a, self.lm.model_id, probe is not None)
            for a in answers
            if not (cancel.token.cancelled and a.finish_reason == "stopped")
        ]  # cut short: not stored
        probe_version = probe.probe_version if probe else -1
        return {
            "answer": np.array([encode_answer(a) for a in kept], dtype=object),
            "probe_version": np.full(len(kept), probe_version, dtype=np.int64),
        }


class RescoreReplica:
    """One model replica that scores shards of stored answers with one probe version."""

    def __init__(self, database_url: str, run_id: int | None, model: str | None, probe_version: int) -> None:
        from db import open_database

        worker_defaults()
        database_url = with_local_password(database_url)  # handed without its password
        self.database_url, self.run_id = database_url, run_id
        self.lm = get_model(model)
        self.database = open_database(database_url, migrate=False)
        self.probe = load_version(self.database, self.lm, probe_version)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cancel = _RowCancel(self.database_url, self.run_id)
        try:
            answers = read_answers(self.database, [int(i) for i in batch["id"]])
            scored = score_answers(self.lm, self.probe, answers, cancel.token) if answers else []
        except Cancelled:
            scored = []
        finally:
            cancel.done.set()
        return {"scored": np.array([json.dumps(asdict(s)) for s in scored], dtype=object)}


def _decode_scored(text: str) -> ScoredAnswer:
    data = json.loads(text)
    trace = data["new_trace"]
    return ScoredAnswer(
        int(data["generation_id"]), list(data["scores"]), TokenTrace.from_dict(trace) if trace else None
    )


def _pipeline(
    rows: list[dict[str, Any]],
    replica: type,
    constructor: dict[str, Any],
    shard: int,
    replicas: int,
    resources: dict[str, Any],
    calls_per_replica: int = 1,
):
    """`calls_per_replica` > 1 only for replicas whose model work is serialised by themselves
    (the generation engine's one thread): two threads in one forward pass would share its taps."""
    import ray

    pool = ray.data.ActorPoolStrategy(
        size=replicas,
        max_tasks_in_flight_per_actor=calls_per_replica,
        max_concurrent_calls_per_actor=calls_per_replica,
        enable_true_multi_threading=calls_per_replica > 1,
    )
    with warnings.catch_warnings():
        # Ray Data names no parameter for actor restarts; its own docs pass max_restarts as an
        # extra keyword, which Ray 2.60 flags as a deprecated "ray_remote_args" use.
        warnings.simplefilter("ignore", DeprecationWarning)
        return ray.data.from_items(rows).map_batches(
            replica,
            fn_constructor_kwargs=constructor,
            batch_size=shard,
            compute=pool,
            batch_format="numpy",
            **NO_RESTARTS,
            **resources,
        )


def _active_version(database) -> int | None:
    with database.sessions() as session:
        probe = active_probe(session)
        return probe.version if probe is not None else None


def ray_generate(
    database,
    params: BatchParams,
    *,
    run_id: int | None = None,
    created_by: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """`run_batch` on the Ray cluster: the same answers, stored the same way (one row per answer)."""
    connect()
    replicas, resources = replica_resources(cluster_shape())
    shard = shard_size(len(params.prompts), replicas, params.batch_size or DEFAULT_BATCH)
    version = _active_version(database) if params.score else None
    rows = [{"index": params.prompt_number(i), "prompt": json.dumps(p)} for i, p in enumerate(params.prompts)]
    report(progress, "load", 0, 1, f"starting {plural(replicas, 'model replica')} on Ray")
    import ray

    tally: Any = ray.remote(TokenTally).options(num_cpus=0).remote()
    writer = AnswerWriter(database, params, None, created_by, run_id)

    def tokens_report(done: int, total: int, tokens: int) -> None:
        message = f"{len(writer.stored)}/{len(rows)} answers stored · {tokens} tokens · shards of {shard}"
        report(progress, "generate", done, total, message + writer.notes())

    watcher = DriverProgress(tally, params.decoding.max_new_tokens, len(rows), tokens_report).start()
    data = _pipeline(
        rows,
        GenerateReplica,
        {
            "database_url": without_password(database.full_url),
            "run_id": run_id,
            "params": params.to_dict(),
            "probe_version": version,
            "tally": tally,
        },
        shard,
        replicas,
        resources,
        calls_per_replica=CALLS_PER_REPLICA,
    )
    returned = 0
    try:
        for batch in data.iter_batches(batch_size=None, batch_format="numpy"):
            answers = [decode_answer(text) for text in batch["answer"]]
            versions = {int(v) for v in batch["probe_version"]} - {-1}
            writer.probe_version = versions.pop() if versions else None
            writer.store(answers)
            returned += len(answers)
            watcher.poll()
            watcher.at_least(returned * params.decoding.max_new_tokens, writer.tokens)
            watcher.report_now()
            if cancel is not None and cancel.cancelled:
                break
    finally:
        watcher.close()
        ray.kill(tally)
    if cancel is not None and cancel.cancelled:
        raise Cancelled(kept_message(len(writer.stored), len(rows)))
    return writer.result()


def ray_rescore(
    database,
    probe_version: int,
    model: str | None,
    *,
    run_id: int | None = None,
    only_missing: bool = True,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, int]:
    """`rescore` on the Ray cluster: scores computed by replicas, written here shard by shard."""
    connect()
    ids = ids_to_score(database, probe_version, only_missing)
    counts = {"scored": 0, "tokens_added": 0, "total": len(ids)}
    report(progress, "rescore", 0, len(ids), f"{plural(len(ids), 'answer')} to score with v{probe_version}")
    if not ids:
        return counts
    replicas, resources = replica_resources(cluster_shape())
    shard = shard_size(len(ids), replicas, DEFAULT_BATCH)
    data = _pipeline(
        [{"id": i} for i in ids],
        RescoreReplica,
        {
            "database_url": without_password(database.full_url),
            "run_id": run_id,
            "model": model,
            "probe_version": probe_version,
        },
        shard,
        replicas,
        resources,
    )
    seen = 0
    for batch in data.iter_batches(batch_size=None, batch_format="numpy"):
        scored = [_decode_scored(text) for text in batch["scored"]]
        store_scored(database, probe_version, scored, counts)
        seen += len(scored)
        report(progress, "rescore", seen, len(ids), f"v{probe_version}")
        if cancel is not None and cancel.cancelled:
            break
    check(cancel)
    return counts
