"""Retrain wall time with the embedded model: cold vs warm activation cache, and after 10 corrections.

Each retrain is what the Probes page does: a worker process (`python -m core.orchestration.worker`)
that loads the model, reads the labels, extracts or loads hidden states, trains,
evaluates on the validation split, compares with the active probe (1,000 paired
bootstrap resamples) and registers the version. The wall time is measured from the
press (run row created) to the registered version.

Run: .venv/bin/python benchmarks/retrain.py [--sizes 200,2000,20000]
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

PLACES = [
    ("France", "Paris", "Lyon"),
    ("Japan", "Tokyo", "Osaka"),
    ("Italy", "Rome", "Milan"),
    ("Spain", "Madrid", "Seville"),
    ("Peru", "Lima", "Cusco"),
    ("Kenya", "Nairobi", "Mombasa"),
    ("Egypt", "Cairo", "Giza"),
    ("Chile", "Santiago", "Arica"),
    ("Canada", "Ottawa", "Toronto"),
    ("Australia", "Canberra", "Sydney"),
    ("Brazil", "Brasilia", "Rio de Janeiro"),
    ("Turkey", "Ankara", "Istanbul"),
    ("India", "New Delhi", "Mumbai"),
    ("Nigeria", "Abuja", "Lagos"),
    ("Vietnam", "Hanoi", "Ho Chi Minh City"),
    ("Morocco", "Rabat", "Casablanca"),
]


def answers(n: int):
    """n distinct answers (~40 tokens), half with a wrong capital labelled Not Supported."""
    from core.base.types import Span

    for i in range(n):
        country, right, wrong = PLACES[i % len(PLACES)]
        city = wrong if i % 2 else right
        text = (
            f"The capital of {country} is {city}. It has about {(i * 7919) % 900 + 100} thousand "
            f"inhabitants and was first mentioned in {1000 + (i * 31) % 900}."
        )
        start = text.index(city)
        yield (
            f"Tell me about the capital of {country}. (#{i})",
            text,
            [Span(start, start + len(city), "Not Supported" if i % 2 else "Supported")],
            "validation" if i % 5 == 0 else "train",
        )


def seed(database, n: int) -> list[int]:
    from core.base.types import Generation
    from db.annotations import save_annotation_set
    from db.generations import add_generation, get_or_create_dataset

    ids = []
    with database.sessions() as session, session.begin():
        dataset = get_or_create_dataset(session, "bench")
        for prompt, text, spans, split in answers(n):
            row = add_generation(
                session,
                dataset,
                Generation([{"role": "user", "content": prompt}, {"role": "assistant", "content": text}]),
                split=split,
            )
            save_annotation_set(session, row.id, spans, owner=None, expected_version=0, actor=None)
            ids.append(row.id)
    return ids


def correct(database, ids: list[int]) -> None:
    """A reviewer flips the label of 10 answers (new gold versions; the text is unchanged)."""
    from core.base.types import Span
    from db.annotations import get_set, save_annotation_set, spans_of

    with database.sessions() as session, session.begin():
        for generation_id in ids:
            gold = get_set(session, generation_id, None)
            flipped = [
                Span(s.start, s.end, "Supported" if s.label == "Not Supported" else "Not Supported")
                for s in spans_of(gold)
            ]
            save_annotation_set(session, generation_id, flipped, owner=None, expected_version=gold.version, actor=None)


def timed_retrain(database) -> tuple[float, dict, int]:
    from core.orchestration.launcher import launch
    from db.train_runs import get_run

    started = time.perf_counter()
    run_id = launch(database, "retrain", {}, None)
    while True:
        with database.sessions() as session:
            run = get_run(session, run_id)
            if run.status not in ("queued", "running"):
                break
        time.sleep(0.05)
    wall = time.perf_counter() - started
    if run.status != "succeeded":
        raise SystemExit(f"run {run_id} {run.status}: {run.error}")
    return wall, dict(run.timings or {}), run.pid


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="200,2000,20000")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="keep hidden states here between invocations (then 'cold' is only cold the first time)",
    )
    args = parser.parse_args()
    os.environ.setdefault("PROBELENS_WORKER_IDLE_SECONDS", "60")  # warm workers, as in the app; gone soon after
    os.environ.setdefault("PROBELENS_MODEL_CACHE_DIR", str(ROOT / "data" / "cache" / "models"))
    os.environ.pop("PROBELENS_MODEL", None)
    from core.engine.model import get_model
    from core.orchestration.registry import promote

    get_model(None)  # de-quantise once if this machine never did, outside every timing
    from db import open_database

    print(f"cpus={os.cpu_count()} model=embedded:SmolLM2-135M-Instruct (each retrain = a fresh worker process)")
    for size in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["PROBELENS_CACHE_DIR"] = args.cache_dir or str(Path(tmp) / "cache")
            os.environ["PROBELENS_PROBES_DIR"] = str(Path(tmp) / "probes")
            database = open_database(f"sqlite:///{tmp}/bench.db")
            ids = seed(database, size)
            cold, t_cold, pid_cold = timed_retrain(database)
            promote(database, 1, None)  # later runs also compare against an active probe
            warm, t_warm, pid_warm = timed_retrain(database)
            correct(database, ids[1:20:2][:10])
            incremental, t_inc, pid_inc = timed_retrain(database)
            database.dispose()

        def parts(t: dict) -> str:
            return " ".join(f"{k}={v:.2f}" for k, v in sorted(t.items()))

        print(
            f"answers={size} cold_s={cold:.2f} warm_s={warm:.2f} incremental_after_10_corrections_s="
            f"{incremental:.2f} ratio_warm_over_cold={warm / cold:.3f}"
        )
        print(
            f"  worker processes: cold pid {pid_cold}, warm pid {pid_warm}, incremental pid {pid_inc}"
            f" ({'the warm worker took the later runs' if pid_cold == pid_warm == pid_inc else 'new processes'})"
        )
        print(f"  cold: {parts(t_cold)}")
        print(f"  warm: {parts(t_warm)}")
        print(f"  incremental: {parts(t_inc)}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
