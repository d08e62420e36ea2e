"""Batch generation throughput: ours against plain `model.generate`, same prompts, same process.

Ours is `core.orchestration.batch.run_batch` exactly as the Data page's worker runs it: the
batched engine with continuous batching, every token scored by the active probe (a real
probe file registered in a temporary SQLite database), each answer stored with its tokens,
log-probs, entropies and scores. Baselines, greedy, on the same prompts:
- `model.generate` batched at the same batch size (left padding, attention mask), and
- `model.generate` one prompt at a time (on the first --single prompts: it is slow).
Rounds alternate (plain, ours, plain, ours) so drift on a shared machine hits both alike.
Last line: `ratio=<ours / batched plain>` (goal >= 0.8); also ours / one-at-a-time (goal >= 5).

Run: .venv/bin/python benchmarks/batch_generate.py [--prompts 64] [--tokens 64] [--batch-size 32]
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

SUBJECTS = [
    "Lviv",
    "Lise Meitner",
    "the river Danube",
    "the game of Go",
    "Middlemarch",
    "the Andes",
    "Ada Lovelace",
    "the city of Porto",
    "the Silk Road",
    "photosynthesis",
]


def prompts(n: int) -> list[list[dict[str, str]]]:
    return [
        [{"role": "user", "content": f"Tell me about {SUBJECTS[i % len(SUBJECTS)]}. (Part {i // 10 + 1})"}]
        for i in range(n)
    ]


def plain_generate(lm, batch: list[list[dict[str, str]]], n: int) -> int:
    """Plain `generate`, left-padded, every row forced to n new tokens; returns the tokens made."""
    from core.engine.stream import prompt_ids

    rows = [prompt_ids(lm, m) for m in batch]
    width = max(len(r) for r in rows)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        mask[i, width - len(r) :] = 1
    with torch.inference_mode():
        out = lm.model.generate(
            ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=pad
        )
    return int(out.shape[1] - width) * len(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--single", type=int, default=12, help="prompts for the one-at-a-time baseline")
    args = parser.parse_args()
    os.environ.setdefault("PROBELENS_MODEL_CACHE_DIR", str(ROOT / "data" / "cache" / "models"))
    from core.base.decoding import DecodingSettings
    from core.engine.model import get_model
    from core.orchestration.batch import BatchParams, run_batch
    from core.probes.config import ProbeConfig
    from core.probes.files import save_probe
    from core.probes.linear import LinearProbe
    from db import open_database
    from db.probes import register_probe

    torch.set_num_threads(os.cpu_count() or 1)
    lm = get_model(None)
    size = args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PROBELENS_CACHE_DIR"] = str(Path(tmp) / "cache")
        database = open_database(f"sqlite:///{tmp}/bench.db")
        torch.manual_seed(0)
        config = ProbeConfig(
            model_id=lm.model_id, tokenizer_hash=lm.tokenizer_hash, layer=lm.default_layer, hidden_size=lm.hidden_size
        )
        save_probe(Path(tmp) / "probe", LinearProbe(lm.hidden_size), config)
        with database.sessions() as session, session.begin():
            register_probe(session, artifact_dir=str(Path(tmp) / "probe"), config=config, activate=True)
        all_prompts = prompts(args.prompts)
        plain_generate(lm, all_prompts[:2], 4)  # warm-up both paths
        run_batch(
            database,
            lm,
            BatchParams(prompts=all_prompts[:2], dataset="warmup", decoding=DecodingSettings(max_new_tokens=4)),
        )
        t_plain = t_ours = t_single = 0.0
        n_plain = n_ours = n_single = answers = 0
        halves = [all_prompts[: len(all_prompts) // 2], all_prompts[len(all_prompts) // 2 :]]
        for round_, half in enumerate(halves):
            began = time.perf_counter()
            for start in range(0, len(half), size):
                n_plain += plain_generate(lm, half[start : start + size], args.tokens)
            t_plain += time.perf_counter() - began
            began = time.perf_counter()
            result = run_batch(
                database,
                lm,
                BatchParams(
                    prompts=half,
                    dataset=f"bench{round_}",
                    decoding=DecodingSettings(max_new_tokens=args.tokens),
                    batch_size=size,
                ),
            )
            t_ours += time.perf_counter() - began
            n_ours += result["tokens"]
            answers += result["answers"]
        began = time.perf_counter()
        for messages in all_prompts[: args.single]:
            n_single += plain_generate(lm, [messages], args.tokens)
        t_single = time.perf_counter() - began
        database.dispose()
    plain_tps, ours_tps, single_tps = n_plain / t_plain, n_ours / t_ours, n_single / t_single
    print(f"cpus={os.cpu_count()} prompts={args.prompts} max_new_tokens={args.tokens} batch_size={size} (greedy)")
    print(f"plain_generate_one_at_a_time: {n_single} tokens in {t_single:.1f} s = {single_tps:.1f} tokens/s")
    print(f"plain_generate_batched: {n_plain} tokens in {t_plain:.1f} s = {plain_tps:.1f} tokens/s")
    print(
        f"probelens_batch: {n_ours} tokens in {t_ours:.1f} s = {ours_tps:.1f} tokens/s, "
        f"{answers / t_ours * 60:.0f} answers/min (stored with tokens, log-probs, entropies, probe scores)"
    )
    print(f"ratio_vs_one_at_a_time={ours_tps / single_tps:.2f} (goal >= 5)")
    print(f"ratio={ours_tps / plain_tps:.3f}")


if __name__ == "__main__":
    main()
