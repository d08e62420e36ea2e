"""Batch generation throughput vs plain `model.generate`, same prompts, same process.

Ours is `core.orchestration.batch.run_batch` exactly as the Data page's worker runs it: stream each answer
with the KV cache, score every token with the active probe (a real probe file registered in
a temporary SQLite database), and store each answer with its tokens, log-probs, entropies
and scores. The baseline is `model.generate` (greedy, batch size 1) on the same prompts with
the same number of new tokens. The two alternate in chunks of 5 prompts so drift on a shared
machine hits both alike. Run: .venv/bin/python benchmarks/batch_generate.py [--prompts 50] [--tokens 64]
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

import torch  # noqa: E402

SUBJECTS = ["Lviv", "Lise Meitner", "the river Danube", "the game of Go", "Middlemarch", "the Andes",
            "Ada Lovelace", "the city of Porto", "the Silk Road", "photosynthesis"]


def prompts(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"Tell me about {SUBJECTS[i % len(SUBJECTS)]}. (Part {i // 10 + 1})"}]
            for i in range(n)]


def plain(lm, messages, n: int) -> int:
    from core.engine.stream import prompt_ids

    ids = torch.tensor([prompt_ids(lm, messages)])
    with torch.inference_mode():
        out = lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                                do_sample=False)
    return int(out.shape[1] - ids.shape[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("PROBELENS_MODEL_CACHE_DIR", str(ROOT / "data" / "cache" / "models"))
    from core.engine.model import get_model
    from core.orchestration.batch import BatchParams, run_batch
    from core.probes.config import ProbeConfig
    from core.probes.files import save_probe
    from core.probes.linear import LinearProbe
    from db import open_database
    from db.probes import register_probe

    lm = get_model(None)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PROBELENS_CACHE_DIR"] = str(Path(tmp) / "cache")
        database = open_database(f"sqlite:///{tmp}/bench.db")
        torch.manual_seed(0)
        config = ProbeConfig(model_id=lm.model_id, tokenizer_hash=lm.tokenizer_hash, layer=lm.default_layer,
                             hidden_size=lm.hidden_size)
        save_probe(Path(tmp) / "probe", LinearProbe(lm.hidden_size), config)
        with database.sessions() as session, session.begin():
            register_probe(session, artifact_dir=str(Path(tmp) / "probe"), config=config, activate=True)
        all_prompts = prompts(args.prompts)
        plain(lm, all_prompts[0], 4)  # warm-up both paths
        run_batch(database, lm, BatchParams(prompts=all_prompts[:1], dataset="warmup", max_new_tokens=4))
        t_plain = t_ours = 0.0
        n_plain = n_ours = answers = 0
        for start in range(0, len(all_prompts), 5):
            chunk = all_prompts[start:start + 5]
            began = time.perf_counter()
            n_plain += sum(plain(lm, m, args.tokens) for m in chunk)
            t_plain += time.perf_counter() - began
            began = time.perf_counter()
            # ignore_eos is not an option of ours: compare per token, and count answers as made
            result = run_batch(database, lm, BatchParams(prompts=chunk, dataset="bench", max_new_tokens=args.tokens))
            t_ours += time.perf_counter() - began
            n_ours += result["tokens"]
            answers += result["answers"]
        database.dispose()
    plain_tps, ours_tps = n_plain / t_plain, n_ours / t_ours
    print(f"cpus={os.cpu_count()} prompts={args.prompts} max_new_tokens={args.tokens} (greedy)")
    print(f"plain_generate: {n_plain} tokens in {t_plain:.1f} s = {plain_tps:.2f} tokens/s, "
          f"{args.prompts / t_plain * 60:.1f} answers/min")
    print(f"probelens_batch: {n_ours} tokens in {t_ours:.1f} s = {ours_tps:.2f} tokens/s, "
          f"{answers / t_ours * 60:.1f} answers/min (stored with tokens and probe scores)")
    print(f"ratio_tokens_per_s={ours_tps / plain_tps:.3f}")


if __name__ == "__main__":
    main()
