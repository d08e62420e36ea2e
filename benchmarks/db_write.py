"""Latency of saving an annotation set under concurrent writers, and import/export time.

For SQLite (a real file, WAL) and PostgreSQL (127.0.0.1:5432, a throw-away schema):
p50/p95 of one save (read version, replace spans, bump version, log event, commit) with
1, 10 and 50 writer threads, twice: closed loop (every writer saves again at once: the
saturation case) and paced (each writer pauses ~1 s between saves, like a person);
then import and export of 10,000 generations.

Run: .venv/bin/python benchmarks/db_write.py [--saves 40] [--generations 10000] [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text

from core.base.types import Generation, Span
from db import open_database
from db.annotations import ConflictError, get_set, save_annotation_set
from db.generations import add_generation, get_or_create_dataset
from db.users import add_user

PG_ADMIN_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"
ANSWER = "Lviv was founded in 1256 by King Daniel of Galicia and named after his son Lev. " * 4


def seed(database, n_generations: int, n_users: int):
    with database.sessions() as session, session.begin():
        dataset = get_or_create_dataset(session, "bench")
        users = [add_user(session, f"writer{i}", "password123", role="annotator") for i in range(n_users)]
        ids = []
        for g in range(n_generations):
            gen = Generation(
                conversation=[{"role": "user", "content": f"q{g}"}, {"role": "assistant", "content": ANSWER}]
            )
            ids.append(add_generation(session, dataset, gen).id)
        return ids, [u.id for u in users]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def writer(
    database,
    user_id: int,
    generation_ids: list[int],
    saves: int,
    latencies: list[float],
    conflicts: list[int],
    pace_s: float = 0.0,
):
    import random

    from db.models import User

    rng = random.Random(user_id)
    for n in range(saves):
        if pace_s:
            time.sleep(rng.uniform(0.5, 1.5) * pace_s)  # a person pauses between saves
        generation_id = generation_ids[n % len(generation_ids)]
        spans = [Span(0, 4, "Supported"), Span(20, 24, "Not Supported" if n % 2 else "Supported")]
        started = time.perf_counter()
        try:
            with database.sessions() as session, session.begin():
                user = session.get(User, user_id)
                current = get_set(session, generation_id, user)
                save_annotation_set(
                    session,
                    generation_id,
                    spans,
                    owner=user,
                    expected_version=current.version if current else 0,
                    actor=user,
                )
        except ConflictError:
            conflicts.append(1)
        latencies.append((time.perf_counter() - started) * 1000)


def bench_writes(database, writers: int, saves: int, pace_s: float = 0.0) -> tuple[float, float, int]:
    generation_ids, user_ids = seed_once(database, writers)
    latencies: list[float] = []
    conflicts: list[int] = []
    threads = [
        threading.Thread(
            target=writer, args=(database, user_ids[i], generation_ids, saves, latencies, conflicts, pace_s)
        )
        for i in range(writers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statistics.median(latencies), percentile(latencies, 0.95), len(conflicts)


_SEEDED: dict[int, tuple[list[int], list[int]]] = {}


def seed_once(database, writers: int):
    key = id(database)
    if key not in _SEEDED:
        _SEEDED[key] = seed(database, 20, 50)
    ids, users = _SEEDED[key]
    return ids, users[:writers]


def bench_import_export(database, n: int, workdir: Path) -> tuple[float, float]:
    from core.orchestration.imports import import_file
    from db.exporter import export_file

    source = workdir / "bulk.jsonl"
    with source.open("w", encoding="utf-8") as fh:
        for g in range(n):
            answer = f"Answer {g}: {ANSWER}"
            fh.write(
                json.dumps(
                    {
                        "id": f"g{g}",
                        "conversation": [
                            {"role": "user", "content": f"Question {g}?"},
                            {"role": "assistant", "content": answer},
                        ],
                        "annotations": [
                            {"span": "Lviv", "index": answer.index("Lviv"), "label": "Supported"},
                            {"span": "1256", "label": "Not Supported"},
                        ],
                    }
                )
                + "\n"
            )
    started = time.perf_counter()
    with database.sessions() as session, session.begin():
        import_file(session, source, dataset="bulk", actor=None)
    import_s = time.perf_counter() - started
    started = time.perf_counter()
    with database.sessions() as session:
        export_file(session, "bulk", workdir / "out.jsonl", format="jsonl")
    return import_s, time.perf_counter() - started


def run_backend(name: str, database, args, workdir: Path) -> None:
    for mode, pace in (("closed-loop", 0.0), (f"paced-{args.pace_ms}ms", args.pace_ms / 1000)):
        for writers in (1, 10, 50):
            saves = args.saves if pace == 0 else max(5, args.saves // 4)
            p50, p95, conflicts = bench_writes(database, writers, saves, pace)
            print(
                f"{name} {mode} writers={writers:>2} saves={writers * saves:>5} p50_ms={p50:.1f} p95_ms={p95:.1f} "
                f"conflicts={conflicts}"
            )
    import_s, export_s = bench_import_export(database, args.generations, workdir)
    print(f"{name} import_{args.generations}_s={import_s:.1f} export_{args.generations}_s={export_s:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--saves", type=int, default=40, help="saves per writer")
    parser.add_argument("--generations", type=int, default=10_000)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--pace-ms", type=int, default=1000, help="mean pause between one writer's saves (paced mode)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        sqlite = open_database(f"sqlite:///{workdir / 'bench.db'}")
        run_backend("sqlite", sqlite, args, workdir)
        sqlite.dispose()
        if args.no_postgres:
            return
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(PG_ADMIN_URL)
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        try:
            pg = open_database(f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}")
            run_backend("postgres", pg, args, workdir)
            pg.dispose()
        finally:
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))


if __name__ == "__main__":
    main()
