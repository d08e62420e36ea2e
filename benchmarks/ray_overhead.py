"""Batch generation through a local Ray against the local path, same prompts, same machine.

Both paths do the whole job of a `generate` run, database writes included, with the embedded
model and the same batch size: the local path loads the model in this process and runs
`run_batch`; the Ray path (`ray_generate`, the code a run uses when PROBELENS_RAY_ADDRESS is
set) starts its model replica(s) in Ray worker processes, which load the model themselves, and
writes back shard by shard. Both timings include loading the model. Ray is started in this
process after the local run and left to settle (not timed: a cluster is started once, not per run).

Prints tokens/s for each, Ray's fixed cost per run (a one-token job), and `ratio=<ray tokens/s / local tokens/s>` (goal >= 0.85).

Run: .venv/bin/python benchmarks/ray_overhead.py [--prompts 256] [--tokens 64] [--batch-size 32]
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


SETTLE_SECONDS = 15.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("PROBELENS_MODEL_CACHE_DIR", str(ROOT / "data" / "cache" / "models"))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PROBELENS_CACHE_DIR"] = str(Path(tmp) / "cache")
        os.environ["PROBELENS_PROBES_DIR"] = str(Path(tmp) / "probes")
        os.environ["PROBELENS_RAY_ADDRESS"] = "local"
        import ray

        from core.base.decoding import DecodingSettings
        from core.engine.model import load_model
        from core.orchestration.batch import BatchParams, run_batch
        from core.orchestration.ray_cluster import cluster_shape, connect
        from core.orchestration.ray_pipelines import ray_generate
        from core.text.demo import demo_questions
        from db import open_database

        database = open_database(f"sqlite:///{tmp}/probelens.db")
        prompts = [[{"role": "user", "content": q.prompt}] for q in demo_questions(args.prompts)]

        def params(dataset: str) -> BatchParams:
            return BatchParams(
                prompts=prompts,
                dataset=dataset,
                decoding=DecodingSettings(max_new_tokens=args.tokens, temperature=0.0),
                batch_size=args.batch_size,
                score=False,
            )

        began = time.perf_counter()
        local = run_batch(database, load_model(None), params("local"))
        local_s = time.perf_counter() - began
        connect()  # after the local run: Ray's own processes start busy and would slow the local path
        time.sleep(SETTLE_SECONDS)
        shape = cluster_shape()
        began = time.perf_counter()
        on_ray = ray_generate(database, params("ray"))
        ray_s = time.perf_counter() - began
        began = time.perf_counter()  # the fixed cost: a one-token job (replica start, imports, model load)
        ray_generate(
            database,
            BatchParams(
                prompts=prompts[:1], dataset="start-up", decoding=DecodingSettings(max_new_tokens=1), score=False
            ),
        )
        startup_s = time.perf_counter() - began
        ray.shutdown()
        database.dispose()
    local_tps, ray_tps = local["tokens"] / local_s, on_ray["tokens"] / ray_s
    print(
        f"cpus={os.cpu_count()} ray nodes={shape.nodes} gpus={shape.gpus} prompts={args.prompts} "
        f"max_new_tokens={args.tokens} batch_size={args.batch_size}"
    )
    print(f"local: {local['answers']} answers, {local['tokens']} tokens in {local_s:.1f} s = {local_tps:.1f} tokens/s")
    print(f"ray:   {on_ray['answers']} answers, {on_ray['tokens']} tokens in {ray_s:.1f} s = {ray_tps:.1f} tokens/s")
    print(f"ray fixed cost per run (a one-token job: replica process, imports, model load): {startup_s:.1f} s")
    print(f"ratio={ray_tps / local_tps:.3f} (goal >= 0.85)")


if __name__ == "__main__":
    main()
