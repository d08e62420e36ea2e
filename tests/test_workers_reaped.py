"""Finished run workers are reaped by the process that started them (#25 bug 7): three
zombies of the app server were left after a team's day."""

from __future__ import annotations

import os
import time
from pathlib import Path

from core.orchestration.launcher import launch
from core.orchestration.run_params import RescoreParams
from db.models import RunKind
from db.train_runs import get_run
from tests.support.runs import finished, wait_for_run


def _zombie_children(parent: int) -> list[int]:
    """Pids of `parent`'s children that have exited and were never waited on (state Z)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


def _gone_or_zombie(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_finished_workers_leave_no_zombies_of_the_server(sqlite_db, tmp_path, isolated_cache, monkeypatch):
    monkeypatch.setenv("PROBELENS_WORKER_IDLE_SECONDS", "0")  # each worker exits after its run
    pids = []
    for _ in range(2):  # a re-score on a model that does not exist fails at once
        run_id = launch(sqlite_db, RunKind.RESCORE, RescoreParams(999, str(tmp_path / "no-model")).to_dict(), None)
        wait_for_run(sqlite_db, run_id, finished, timeout=180)
        with sqlite_db.sessions() as session:
            pids.append(get_run(session, run_id).pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(_gone_or_zombie(pid) for pid in pids):
        time.sleep(0.2)
    assert all(_gone_or_zombie(pid) for pid in pids)
    deadline = time.monotonic() + 10  # the reaper polls about once a second
    while time.monotonic() < deadline and set(pids) & set(_zombie_children(os.getpid())):
        time.sleep(0.2)
    assert not set(pids) & set(_zombie_children(os.getpid()))
