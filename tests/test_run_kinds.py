"""Run kinds: one table from kind to params type and handler, the worker's own entry point,
run statuses as the enum only, and the process check below storage."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.base.processes import process_alive
from core.orchestration import launcher
from core.orchestration.batch import BatchParams
from core.orchestration.cli import main as user_cli
from core.orchestration.label_run import LabelParams
from core.orchestration.retrain import RetrainParams
from core.orchestration.run_params import RescoreParams, SeedParams
from core.orchestration.runs import RUN_KINDS
from core.orchestration.worker import IDLE, run_in_ray_worker
from core.orchestration.worker import main as worker_cli
from db.models import RunKind, RunStatus
from db.train_runs import ACTIVE, FINISHED

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {
    RunKind.RETRAIN: RetrainParams(model="m", epochs=3, n_boot=50),
    RunKind.RESCORE: RescoreParams(probe_version=4, model="m"),
    RunKind.GENERATE: BatchParams(prompts=[[{"role": "user", "content": "Hi"}]], dataset="d"),
    RunKind.SEED: SeedParams(size=20, model="m"),
    RunKind.LABEL: LabelParams(dataset="d", judge="j", split="test", unlabelled_only=True, instructions=2),
}


def test_every_run_kind_has_one_entry_whose_params_round_trip_through_the_row():
    assert set(RUN_KINDS) == set(RunKind)
    for kind, spec in RUN_KINDS.items():
        example = EXAMPLES[kind]
        assert isinstance(example, spec.params)
        assert spec.params.from_dict(example.to_dict()) == example
        assert callable(spec.local) and callable(spec.on_ray)
    assert RUN_KINDS[RunKind.GENERATE].on_ray is not RUN_KINDS[RunKind.GENERATE].local  # bulk fans out on Ray
    assert RUN_KINDS[RunKind.RETRAIN].on_ray is RUN_KINDS[RunKind.RETRAIN].local


def test_small_params_read_what_earlier_rows_hold():
    assert RescoreParams.from_dict({"version": "3"}) == RescoreParams(3, None)
    assert SeedParams.from_dict({"size": 200, "model": None}) == SeedParams(200, None)
    assert SeedParams.from_dict({}) == SeedParams(None, None)


def test_statuses_are_the_enum_only():
    assert set(ACTIVE) | set(FINISHED) == set(RunStatus)
    assert all(isinstance(status, RunStatus) for status in (*ACTIVE, *FINISHED))
    assert "queued" in ACTIVE and "failed" in FINISHED  # rows hold plain text; it compares equal
    assert IDLE not in {s.value for s in RunStatus}


def test_the_worker_is_not_a_user_command(capsys):
    assert user_cli(["worker", "--run", "1"]) == 2
    assert "invalid choice: 'worker'" in capsys.readouterr().err


@pytest.mark.slow  # a Python process that imports the worker: seconds
def test_the_worker_has_its_own_entry_point_that_the_launcher_and_ray_name():
    module = importlib.import_module(launcher.WORKER_MODULE)
    assert module.main is worker_cli
    assert launcher.RAY_ENTRY is run_in_ray_worker  # submitted by reference, not by a module path
    with pytest.raises(SystemExit):
        worker_cli(["--help"])
    result = subprocess.run(
        [sys.executable, "-m", launcher.WORKER_MODULE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 2 and "--run" in result.stderr


def test_the_worker_entry_runs_nothing_for_a_run_it_cannot_claim(sqlite_db, isolated_cache, monkeypatch):
    """A run another worker already took (or none at all): nothing to do, exit 0 once no longer warm."""
    monkeypatch.setenv("DATABASE_URL", sqlite_db.full_url)
    monkeypatch.setenv("PROBELENS_WORKER_IDLE_SECONDS", "0")
    assert worker_cli(["--run", "12345"]) == 0


def test_process_alive_tells_a_running_process_from_a_finished_one():
    assert process_alive(os.getpid())
    assert not process_alive(None) and not process_alive(0)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process_alive(child.pid)
