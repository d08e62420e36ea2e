"""Runs on a real Ray (started in this process with this machine's CPUs, as `PROBELENS_RAY_ADDRESS=local`
does): batch generation and re-scoring through Ray Data replicas store what the local path stores;
a cancel keeps the finished answers; a killed replica fails the run cleanly and the next run works;
a retried shard stores nothing twice."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.orchestration.batch import BatchParams, run_batch
from tests.support.capitals import run_retrain, seed
from tests.support.runs import finished, wait_for_run

PROMPTS = [
    "Who founded Lviv?",
    "Name a city in Japan.",
    "Describe Zürich 😀.",
    "What is the capital of France?",
    "Tell me about Marie Curie.",
    "Name a river.",
    "What is 2+2?",
]

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def local_ray(tiny_model_dir, tmp_path_factory):
    """One in-process Ray for the module; its workers see this module's model and cache folders."""
    ray = pytest.importorskip("ray")
    from core.orchestration import ray_cluster

    folder = tmp_path_factory.mktemp("ray-env")
    names = ("PROBELENS_MODEL", "PROBELENS_CACHE_DIR", "PROBELENS_PROBES_DIR", "PROBELENS_RAY_ADDRESS")
    before = {name: os.environ.get(name) for name in names}
    os.environ.update(
        {
            "PROBELENS_MODEL": str(tiny_model_dir),
            "PROBELENS_CACHE_DIR": str(folder / "cache"),
            "PROBELENS_PROBES_DIR": str(folder / "probes"),
            "PROBELENS_RAY_ADDRESS": "local",
        }
    )
    ray_cluster.connect()
    yield folder
    ray.shutdown()
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture()
def database(local_ray, tmp_path):
    from db import open_database

    db = open_database(f"sqlite:///{tmp_path / 'probelens.db'}")
    yield db
    db.dispose()


def _params(n: int, dataset: str, **kw) -> BatchParams:
    prompts = (PROMPTS * (n // len(PROMPTS) + 1))[:n]
    return BatchParams.from_dict(
        {
            "prompts": [[{"role": "user", "content": p}] for p in prompts],
            "dataset": dataset,
            **{"max_new_tokens": 10, "temperature": 1.0, "seed": 3, **kw},
        }
    )


def _stored(database, dataset: str) -> dict[str, tuple]:
    """Answer text -> (token ids, scores of each version) of a dataset's stored answers."""
    from db.arrays import unpack_floats
    from db.generations import trace_of
    from db.models import Dataset, Generation, Prediction

    out = {}
    with database.sessions() as session:
        rows = session.scalars(select(Generation).join(Dataset).where(Dataset.name == dataset))
        for row in rows:
            predictions = session.scalars(select(Prediction).where(Prediction.generation_id == row.id))
            scores = sorted((p.probe_id, tuple(unpack_floats(p.scores))) for p in predictions)
            out[row.conversation[-1]["content"] + "|" + row.conversation[0]["content"]] = (
                tuple(trace_of(row).token_ids),
                scores,
            )
    return out


def _close(a: dict, b: dict, tol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key][0] == b[key][0], key  # the same tokens
        for (pa, sa), (pb, sb) in zip(a[key][1], b[key][1], strict=True):
            assert pa == pb and len(sa) == len(sb)
            assert max((abs(x - y) for x, y in zip(sa, sb)), default=0.0) <= tol


def _count(database, model) -> int:
    with database.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_batch_generation_and_rescore_on_ray_store_what_the_local_path_stores(database, tiny_lm, tiny_model_dir):
    from core.orchestration.launcher import launch
    from core.orchestration.registry import promote
    from core.orchestration.rescore import rescore
    from db.models import RunKind

    seed(database)
    first, _ = run_retrain(database, tiny_lm)
    promote(database, first.probe_version, None)
    params = _params(9, "local", model=str(tiny_model_dir), batch_size=3)
    run_batch(database, tiny_lm, params)
    ray_params = _params(9, "on-ray", model=str(tiny_model_dir), batch_size=3)
    run_id = launch(database, RunKind.GENERATE, ray_params.to_dict(), None)
    run = wait_for_run(database, run_id, finished, timeout=240)
    assert run.status == "succeeded", (run.error, run.message)
    assert run.pid is None and "generated 9 answers" in run.message  # a Ray task: the heartbeat tells liveness
    local, on_ray = _stored(database, "local"), _stored(database, "on-ray")
    assert len(local) == 9
    _close(local, on_ray)
    # a second version re-scores every stored answer, locally and on Ray, to the same scores
    second, _ = run_retrain(database, tiny_lm)
    rescore(database, tiny_lm, second.probe_version)
    expected = _stored(database, "local")
    from db.models import Prediction
    from db.probes import get_probe

    with database.sessions() as session, session.begin():
        probe_id = get_probe(session, second.probe_version).id
        session.query(Prediction).filter(Prediction.probe_id == probe_id).delete()
    run_id = launch(database, RunKind.RESCORE, {"version": second.probe_version, "model": str(tiny_model_dir)}, None)
    run = wait_for_run(database, run_id, finished, timeout=240)
    assert run.status == "succeeded", (run.error, run.message)
    _close(expected, _stored(database, "local"))
    from db.models import Generation

    answers = _count(database, Generation)
    with database.sessions() as session:  # every stored answer, seeded ones included, has v2's scores
        assert (
            session.scalar(select(func.count()).select_from(Prediction).where(Prediction.probe_id == probe_id))
            == answers
        )


def test_a_retried_shard_stores_nothing_twice(database, tiny_model_dir):
    from core.orchestration.batch import AnswerWriter
    from core.orchestration.ray_pipelines import GenerateReplica, decode_answer
    from db.models import Generation

    params = _params(4, "retry", model=str(tiny_model_dir))
    replica = GenerateReplica(database.engine.url.render_as_string(hide_password=False), None, params.to_dict(), None)
    import json

    import numpy as np

    shard = {"index": np.arange(4), "prompt": np.array([json.dumps(p) for p in params.prompts], dtype=object)}
    writer = AnswerWriter(database, params, None, None)
    first = [decode_answer(t) for t in replica(shard)["answer"]]
    writer.store(first)
    again = [decode_answer(t) for t in replica(shard)["answer"]]  # the same shard, computed again
    writer.store(again)
    assert [a.trace.token_ids for a in sorted(first, key=lambda a: a.index)] == [
        a.trace.token_ids for a in sorted(again, key=lambda a: a.index)
    ]
    assert _count(database, Generation) == 4 and writer.repeated == 4


def _replica_pids() -> list[int]:
    """Processes of Ray Data's actor pool running GenerateReplica (Ray names them in their title)."""
    return [pid for pid in _task_pids("") if "GenerateReplica" in _title(pid)]


def test_cancel_keeps_finished_answers_and_a_killed_replica_fails_the_run_cleanly(database, tiny_model_dir):
    from core.orchestration.launcher import launch
    from db.models import Generation, RunKind
    from db.train_runs import request_cancel

    # cancel midway: shards of 3 answers; the cancel comes after some are stored
    params = _params(30, "cancel", model=str(tiny_model_dir), batch_size=1, max_new_tokens=60)
    run_id = launch(database, RunKind.GENERATE, params.to_dict(), None)
    wait_for_run(database, run_id, lambda r: finished(r) or (r.stage == "generate" and r.progress > 0.05), 240)
    with database.sessions() as session, session.begin():
        request_cancel(session, run_id, None)
    run = wait_for_run(database, run_id, finished, timeout=120)
    kept = _count(database, Generation)
    assert run.status == "cancelled" and 0 < kept < 30, (run.status, kept, run.error)

    # a replica killed mid-run: the run fails with a reason, and nothing is left running
    params = _params(30, "killed", model=str(tiny_model_dir), batch_size=1, max_new_tokens=60)
    run_id = launch(database, RunKind.GENERATE, params.to_dict(), None)
    deadline = time.monotonic() + 180
    while not _replica_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _replica_pids(), "no replica process appeared"
    time.sleep(2)
    for pid in _replica_pids():
        os.kill(pid, signal.SIGKILL)
    run = wait_for_run(database, run_id, finished, timeout=180)
    assert run.status == "failed" and "ActorDiedError" in run.error, (run.status, run.error)
    assert not _replica_pids()  # no restarted replica carries on behind the failed run

    # the next run works
    params = _params(3, "after", model=str(tiny_model_dir))
    run_id = launch(database, RunKind.GENERATE, params.to_dict(), None)
    run = wait_for_run(database, run_id, finished, timeout=240)
    assert run.status == "succeeded", run.error


def test_a_retrain_submitted_to_ray_registers_a_version_this_process_loads(database, tiny_lm, tiny_model_dir):
    from core.orchestration.launcher import start_retrain
    from core.orchestration.registry import load_version
    from core.orchestration.retrain import RetrainParams
    from db.probes import list_probes

    seed(database)
    run_id = start_retrain(database, RetrainParams(model=str(tiny_model_dir), n_boot=50), None)
    run = wait_for_run(database, run_id, finished, timeout=240)
    assert run.status == "succeeded" and run.pid is None, (run.error, run.message)
    with database.sessions() as session:
        versions = [p.version for p in list_probes(session)]
    assert len(versions) == 1 and run.probe_id is not None
    loaded = load_version(database, tiny_lm, versions[0])  # registered by a Ray worker, loaded here
    assert loaded.layer == tiny_lm.default_layer


def test_a_killed_ray_retrain_is_marked_failed_by_its_silence_and_registers_nothing(
    database, tiny_model_dir, monkeypatch
):
    from core.orchestration.launcher import start_retrain
    from core.orchestration.retrain import RetrainParams
    from db.probes import list_probes
    from db.train_runs import reap_dead

    monkeypatch.setenv("PROBELENS_WORKER_STALE_SECONDS", "3")  # the app's side reads it when it reaps
    seed(database)
    params = RetrainParams(model=str(tiny_model_dir), n_boot=50, kind="lora", epochs=100, lora_rank=2)
    run_id = start_retrain(database, params, None)
    run = wait_for_run(database, run_id, lambda r: finished(r) or r.stage == "train", timeout=240)
    tasks = _task_pids(f"probelens-retrain-{run_id}")  # submit names the task after its run
    assert tasks, ("no Ray task process found", run.status, run.stage, run.error)
    for pid in tasks:
        os.kill(pid, signal.SIGKILL)
    time.sleep(4)
    with database.sessions() as session, session.begin():
        reap_dead(session)
    run = wait_for_run(database, run_id, finished, timeout=30)
    assert run.status == "failed" and "no heartbeat" in run.error, run.error
    with database.sessions() as session:
        assert list_probes(session) == []  # nothing half-registered
    run_id = start_retrain(database, RetrainParams(model=str(tiny_model_dir), n_boot=50), None)
    assert wait_for_run(database, run_id, finished, timeout=240).status == "succeeded"


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _task_pids(name: str) -> list[int]:
    """Ray worker processes whose title starts with `ray::<name>` (Ray titles them by what they run)."""
    return [
        int(e.name)
        for e in Path("/proc").iterdir()
        if e.name.isdigit() and _title(int(e.name)).startswith(f"ray::{name}")
    ]


def test_ray_generation_reports_tokens_from_the_replicas_before_any_shard_returns(database, tiny_model_dir):
    """One shard holds every prompt, so nothing comes back until all of them end; the tokens the
    replica makes still move the bar (the budget spent, as a local run reports it), forward only."""
    from core.orchestration.ray_pipelines import ray_generate

    seen: list[tuple[str, int, int, str]] = []

    def progress(stage: str, done: int, total: int, message: str = "") -> None:
        seen.append((stage, done, total, message))

    params = _params(16, "ray-progress", model=str(tiny_model_dir), batch_size=16, max_new_tokens=400)
    result = ray_generate(database, params, progress=progress)
    assert result["answers"] > 0  # (repeated prompts may give the same answer: stored once)
    generate = [(done, total, message) for stage, done, total, message in seen if stage == "generate"]
    assert generate, seen
    assert all(total == 16 * 400 for _, total, _ in generate)
    before_any = [(done, message) for done, _, message in generate if message.startswith("0/16 answers stored")]
    assert before_any and any(0 < done < 16 * 400 for done, _ in before_any), generate[:5]
    assert all(" · 0 tokens " not in message for _, message in before_any)  # "generate" only once tokens flow
    dones = [done for done, _, _ in generate]
    assert dones == sorted(dones) and dones[-1] == 16 * 400  # never backwards, and full at the end
    stages = [stage for stage, *_ in seen]
    assert stages.index("load") < stages.index("generate")
