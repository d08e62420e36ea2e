"""Time from an empty database to an active demo probe, the way the app's first start does it.

A fresh SQLite file, probes folder and activation cache in a temporary folder (the
de-quantised model cache is kept: the README gives the one-time de-quantisation apart).
The seed runs as a worker run (`start_seed`), exactly as the sidebar starts it; the script
polls its row and prints when each stage began, then the total. Goal: under 120 s for the
default 200 answers on this machine.

Run: .venv/bin/python benchmarks/demo_seed.py [--size 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("PROBELENS_MODEL_CACHE_DIR", str(ROOT / "data" / "cache" / "models"))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PROBELENS_CACHE_DIR"] = str(Path(tmp) / "cache")
        os.environ["PROBELENS_PROBES_DIR"] = str(Path(tmp) / "probes")
        os.environ["PROBELENS_WORKER_IDLE_SECONDS"] = "0"
        from core.orchestration.launcher import start_seed
        from db import open_database
        from db.probes import active_probe
        from db.train_runs import get_run

        database = open_database(f"sqlite:///{tmp}/probelens.db")
        began = time.perf_counter()
        run_id = start_seed(database, size=args.size)
        stage, stages = None, []
        while True:
            with database.sessions() as session:
                run = get_run(session, run_id)
                status, now_stage, message = run.status, run.stage, run.message
            if now_stage != stage:
                stage = now_stage
                stages.append((time.perf_counter() - began, stage))
            if status not in ("queued", "running"):
                break
            time.sleep(0.25)
        total = time.perf_counter() - began
        with database.sessions() as session:
            probe = active_probe(session)
            version = probe.version if probe else None
            metrics = dict(probe.metrics or {}) if probe else {}
        database.dispose()
    print(f"cpus={os.cpu_count()} size={args.size} status={status} message={message!r}")
    for at, name in stages:
        print(f"  {at:6.1f} s  stage {name}")
    span = (metrics.get("span_max") or {}).get("auc")
    baseline = ((metrics.get("baselines") or {}).get("logprob") or {}).get("span_max", {}).get("auc")
    print(
        f"active probe: v{version}, validation span_max AUC {span} (log-prob baseline {baseline}), "
        f"validation counts {metrics.get('counts')}"
    )
    print(f"seconds_to_active_demo_probe={total:.1f} (goal < 120)")


if __name__ == "__main__":
    main()
