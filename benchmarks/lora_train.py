"""LoRA retrain cost and gain on the demo, with the embedded model, on this machine.

Seeds the demo (200 answers, labelled by the countryinfo rule; the linear demo probe is
trained and made active as on a first start), runs a linear retrain (the linear version a
LoRA run starts from), then a LoRA retrain exactly as the Probes page does (`retrain` with
kind "lora", in-process), and prints: the LoRA run's wall time, the training tokens/s
(forward + backward + the frozen forward of the KL term), the span_max AUC of the demo
probe, the linear retrain and the LoRA version on the same validation answers, the scored
checkpoints (checkpoint 0 is the linear version's head; which step was kept and its gain
over it), and — for the choice of which model generates — greedy-token agreement of the
adapted model with the base model and both models' decode tokens/s.

Run: .venv/bin/python benchmarks/lora_train.py [--size 200] [--epochs 1] [--rank 16]
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


def greedy(model, lm, prompts, n: int) -> tuple[list[list[int]], float]:
    """Greedy tokens of each prompt (batched engine, our own decode loop) and tokens/s."""
    from core.base.decoding import DecodingSettings
    from core.engine.batched import GenerationRequest, generate_batched

    requests = [
        GenerationRequest([{"role": "user", "content": p}], DecodingSettings(max_new_tokens=n), tag=i)
        for i, p in enumerate(prompts)
    ]
    began = time.perf_counter()
    done = sorted(generate_batched(lm, requests, batch_size=8, model=model), key=lambda a: a.request.tag)
    seconds = time.perf_counter() - began
    return [[t.token_id for t in a.tokens] for a in done], sum(len(a.tokens) for a in done) / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--kl-weight", type=float, default=10.0)
    args = parser.parse_args()
    os.environ.setdefault("PROBELENS_MODEL_CACHE_DIR", str(ROOT / "data" / "cache" / "models"))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PROBELENS_CACHE_DIR"] = str(Path(tmp) / "cache")
        os.environ["PROBELENS_PROBES_DIR"] = str(Path(tmp) / "probes")
        from core.engine.model import get_model
        from core.orchestration.registry import load_version
        from core.orchestration.retrain import RetrainParams, retrain
        from core.orchestration.seed import seed_demo
        from core.text.demo import demo_questions
        from db import open_database

        database = open_database(f"sqlite:///{tmp}/probelens.db")
        lm = get_model(None)
        seeded = seed_demo(database, lm, size=args.size)
        linear_auc = seeded["metrics"]["span_max"]["auc"]
        tokens = {"n": 0}

        def count(stage: str, done: int, total: int, message: str = "") -> None:
            if stage == "train":
                tokens["last"] = message

        linear = retrain(database, lm, RetrainParams(kind="linear", n_boot=200))
        began = time.perf_counter()
        outcome = retrain(
            database,
            lm,
            RetrainParams(kind="lora", lora_rank=args.rank, epochs=args.epochs, kl_weight=args.kl_weight, n_boot=1000),
            progress=count,
        )
        seconds = time.perf_counter() - began
        metrics = outcome.metrics
        n_tokens = metrics["train"]["counts"]["tokens"]
        loaded = load_version(database, lm, outcome.probe_version)
        prompts = [q.prompt for q in demo_questions(24)]
        base_tokens, base_tps = greedy(None, lm, prompts, 32)
        lora_tokens, lora_tps = greedy(loaded.model, lm, prompts, 32)
        agree = sum(a == b for x, y in zip(base_tokens, lora_tokens) for a, b in zip(x, y))
        total = sum(min(len(x), len(y)) for x, y in zip(base_tokens, lora_tokens))
        same = sum(x == y for x, y in zip(base_tokens, lora_tokens))
        database.dispose()
    comparison = metrics.get("comparison", {}).get("span_max", {}).get("auc", {})
    print(
        f"cpus={os.cpu_count()} demo answers={args.size} epochs={args.epochs} rank={args.rank} "
        f"kl_weight={args.kl_weight}"
    )
    print(
        f"lora_retrain_seconds={seconds:.1f} (goal < 300) for {metrics['n_train']} training answers, "
        f"{n_tokens} answer tokens: {n_tokens * args.epochs / outcome.timings['train_s']:.0f} tokens/s in training"
    )
    print(
        f"span_max AUC on the same {metrics['n_validation']} validation answers: linear demo probe "
        f"{linear_auc:.3f}, linear retrain {linear.metrics['span_max']['auc']:.3f}, "
        f"lora {metrics['span_max']['auc']:.3f}; paired bootstrap Δ (lora − demo probe) {comparison.get('delta')} "
        f"CI {comparison.get('ci')}"
    )
    kept = metrics.get("checkpoints") or {}
    scores = ", ".join(f"{c['step']}: {c['span_max_auc']}" for c in kept.get("scores", []))
    print(
        f"checkpoints (step: validation span_max AUC) {scores}; kept step {kept.get('kept_step')} of "
        f"{kept.get('last_step')}, gain over the start {kept.get('gain_over_start')}"
    )
    print(
        f"generation: greedy tokens equal to the base model's {agree}/{total} "
        f"({same}/{len(prompts)} answers identical); decode {base_tps:.1f} tokens/s base, {lora_tps:.1f} adapted"
    )


if __name__ == "__main__":
    main()
