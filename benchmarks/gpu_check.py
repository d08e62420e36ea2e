"""GPU check: the engine on a GPU in bfloat16, with a random ~1B-parameter Llama (no download).

One prepared script for a lent GPU machine that has only torch, transformers (with its own
tokenizers), safetensors, peft (with its accelerate) and numpy: it imports those and modules of
our pure core that import nothing else (tests/test_gpu_check.py runs it with every other package
hidden from imports).

1. build: a byte-level BPE tokenizer of ~32k tokens trained offline on synthetic text (as
   tests/conftest.py does for the tiny one), a chat template, a random Llama (hidden 2048, 16
   blocks, MLP 8192, 16 heads / 8 KV heads: ~1.1B parameters), saved to a temporary folder and
   loaded back with `core.engine.model.load_model` (the device and dtype rules under test);
2. stream: `TokenStream` with a random linear probe (its logits spread with std 2 on this
   model's states) scoring every token, greedy and sampled prompts alternating;
3. teacher forcing: `score_batch` of the streamed answers' own tokens; the probe scores must
   equal the streamed ones to `score_tolerance(dtype)` (bfloat16: 0.05, float32: 1e-4);
4. batched: the batched engine (`generate_batched`) on more prompts, each answer's scores
   against teacher forcing of its own tokens (same tolerance); how many answers equal the lone
   stream's token for token is reported, not checked (bfloat16 near-ties may differ);
5. extraction: `extract_activations` into a temporary activation cache, cold then warm (the
   warm read must equal the cold one exactly, float32, stored as bfloat16 for a bf16 model);
6. lora: two LoRA training steps on the bfloat16 model (finite losses, float32 head on the CPU).

Prints tokens/s for each stage, the card (`torch.cuda.get_device_name()`), PASS/FAIL per check,
and writes everything as JSON to --out. Exit 0 when every check passes, 1 otherwise.
Run on the GPU machine: python benchmarks/gpu_check.py --out gpu.json   (about a minute on an H200)
Here, in seconds:       .venv/bin/python benchmarks/gpu_check.py --size tiny --device cpu --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

# Packages the GPU machine does not have. tests/test_gpu_check.py runs this script with them
# hidden from imports; here the JSON only lists those that got imported (transformers imports
# some optional ones by itself where they are installed, e.g. scipy: that is no dependency).
NOT_ON_THE_GPU_MACHINE = (
    "sqlalchemy",
    "alembic",
    "psycopg",
    "streamlit",
    "pandas",
    "pyarrow",
    "sklearn",
    "scipy",
    "plotly",
    "statsmodels",
    "krippendorff",
    "countryinfo",
    "datasets",
    "gguf",
    "db",
    "pages",
)

SIZES = {
    "1b": {
        "vocab": 32000,
        "hidden": 2048,
        "layers": 16,
        "intermediate": 8192,
        "heads": 16,
        "kv_heads": 8,
        "corpus_lines": 20000,
        "stream_prompts": 4,
        "new_tokens": 128,
        "batch_prompts": 64,
        "batch_size": 64,
    },
    "tiny": {
        "vocab": 512,
        "hidden": 64,
        "layers": 4,
        "intermediate": 128,
        "heads": 4,
        "kv_heads": 2,
        "corpus_lines": 2000,
        "stream_prompts": 2,
        "new_tokens": 16,
        "batch_prompts": 6,
        "batch_size": 3,
    },
}
SPECIAL = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
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
    "Marie Curie",
    "東京",
    "Kraków",
    "Zürich 🙂",
]
ENGLISH = [
    "The city of Lviv (German: Lemberg) was founded in 1256 by King Daniel of Galicia.",
    "Marie Curie won the Nobel Prize in Physics in 1903 and in Chemistry in 1911.",
    "Café, naïve, résumé, Zürich, Kraków, São Paulo, Reykjavík. 東京は日本の首都です。",
    "Tell me about the history of the city, its rivers, its bridges and its people.",
]


def prompts(n: int) -> list[list[dict[str, str]]]:
    return [
        [{"role": "user", "content": f"Tell me about {SUBJECTS[i % len(SUBJECTS)]}. (Part {i // len(SUBJECTS) + 1})"}]
        for i in range(n)
    ]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# --- 1. build ------------------------------------------------------------------------------------


def build_tokenizer(vocab: int, lines: int):
    """A byte-level BPE trained offline on synthetic words plus a little real text, with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"]
    syllables += [s + end for s in syllables for end in "nrst"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(60000)]
    corpus = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(lines)] + ENGLISH * 50
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=SPECIAL,
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|end|>", pad_token="<|endoftext|>", chat_template=CHAT_TEMPLATE
    )


def build_model(size: dict, tokenizer, folder: Path, build_on: torch.device, dtype: torch.dtype) -> int:
    """A random Llama saved like a hub model; returns its parameter count."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size["hidden"],
        intermediate_size=size["intermediate"],
        num_hidden_layers=size["layers"],
        num_attention_heads=size["heads"],
        num_key_value_heads=size["kv_heads"],
        max_position_embeddings=4096,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.pad_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    with torch.device(build_on):
        model = LlamaForCausalLM(config)
    model.to(dtype)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    if build_on.type == "cuda":
        torch.cuda.empty_cache()
    return params


def calibrated_probe(lm, layer: int):
    """A random direction, scaled so its logits have mean 0 and std 2 on this model's states:
    scores then spread over (0, 1) as a trained probe's do, so their differences mean something."""
    from core.engine.scoring import score_conversation
    from core.probes.linear import LinearProbe

    conversation = [{"role": "user", "content": ENGLISH[3]}, {"role": "assistant", "content": " ".join(ENGLISH)}]
    hidden = score_conversation(lm, conversation, [layer]).hidden[layer]
    w = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(0))
    z = hidden @ w
    scale = 2.0 / float(z.std())
    return LinearProbe.from_weights(w * scale, -float(z.mean()) * scale)


# --- the checks ----------------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.data: dict = {"stages": {}, "checks": []}

    def stage(self, name: str, **values) -> None:
        self.data["stages"].setdefault(name, {}).update(values)
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
        print(f"[{name}] {shown}", flush=True)

    def check(self, name: str, passed: bool, detail: str) -> None:
        self.data["checks"].append({"name": name, "passed": bool(passed), "detail": detail})
        print(f"{'PASS' if passed else 'FAIL'} {name}: {detail}", flush=True)

    def failed(self, name: str, exc: BaseException) -> None:
        tail = traceback.format_exc().strip().splitlines()[-6:]
        self.data["stages"].setdefault(name, {})["error"] = f"{type(exc).__name__}: {exc}"
        self.check(f"{name} ran", False, f"{type(exc).__name__}: {exc}\n  " + "\n  ".join(tail))


def score_diffs(probe, hidden: torch.Tensor, tokens, layer: int) -> tuple[float, float]:
    """Largest |score| and |logit| differences between teacher-forced states and streamed tokens."""
    streamed = torch.stack([t.hidden[layer] for t in tokens])
    scores = probe.predict(hidden).numpy() - np.array([t.score for t in tokens], dtype=np.float32)
    with torch.no_grad():
        logits = probe(hidden) - probe(streamed)
    return float(np.abs(scores).max()), float(logits.abs().max())


def run(args: argparse.Namespace, report: Report, workdir: Path) -> None:
    from core.engine.model import load_model, resolve_device, score_tolerance

    size = SIZES[args.size]
    new_tokens = args.new_tokens or size["new_tokens"]
    batch_prompts = args.prompts or size["batch_prompts"]
    batch_size = args.batch_size or size["batch_size"]
    device = resolve_device(args.device)
    info = {
        "size": args.size,
        "device_setting": args.device,
        "device": str(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "card": None,
    }
    import transformers

    info["transformers"] = transformers.__version__
    if device.type == "cuda":
        info["card"] = torch.cuda.get_device_name(device.index or 0)
        info["gpus"] = torch.cuda.device_count()
        torch.cuda.reset_peak_memory_stats()
    report.data.update(info)
    print(
        f"card: {info['card'] or 'none (CPU)'} · torch {torch.__version__} (CUDA {torch.version.cuda}) · "
        f"transformers {transformers.__version__}",
        flush=True,
    )

    # 1. build, save, load through load_model ------------------------------------------------------
    started = time.perf_counter()
    tokenizer = build_tokenizer(size["vocab"], size["corpus_lines"])
    tokenizer_seconds = time.perf_counter() - started
    from core.engine.model import check_dtype, default_dtype

    dtype = check_dtype(args.dtype) or default_dtype(device)
    folder = workdir / "model"
    started = time.perf_counter()
    params = build_model(
        size, tokenizer, folder, torch.device("cuda", device.index or 0) if device.type == "cuda" else device, dtype
    )
    build_seconds = time.perf_counter() - started
    lm = load_model(str(folder), device=args.device, dtype=args.dtype)
    layer = lm.default_layer
    tolerance = score_tolerance(lm.dtype)
    placement = sorted({str(p.device) for p in lm.model.parameters()})
    report.stage(
        "build",
        tokenizer_seconds=tokenizer_seconds,
        vocab=len(tokenizer),
        parameters=params,
        build_and_save_seconds=build_seconds,
        load_seconds=lm.load_seconds,
        dtype=str(lm.dtype),
        devices=",".join(placement),
        layer=layer,
        tolerance=tolerance,
    )
    report.check("weights dtype", lm.dtype == dtype, f"{lm.dtype} on {','.join(placement)} (expected {dtype})")
    probe = calibrated_probe(lm, layer)

    # 2. streaming --------------------------------------------------------------------------------
    from core.engine.stream import TokenStream

    shared = prompts(batch_prompts)
    stream_prompts = shared[: size["stream_prompts"]]
    settings = [
        {"temperature": 0.0 if n % 2 == 0 else 0.8, "top_p": 1.0 if n % 2 == 0 else 0.95, "seed": n}
        for n in range(batch_prompts)
    ]
    list(TokenStream(lm, stream_prompts[0], max_new_tokens=4, probe=probe))  # warm-up (kernels, allocator)
    streams = []
    try:
        sync(device)
        started = time.perf_counter()
        for n, messages in enumerate(stream_prompts):
            stream = TokenStream(lm, messages, max_new_tokens=new_tokens, probe=probe, **settings[n])
            streams.append((messages, stream, list(stream)))
        sync(device)
        seconds = time.perf_counter() - started
        count = sum(len(tokens) for _, _, tokens in streams)
        report.stage("stream", answers=len(streams), tokens=count, seconds=seconds, tokens_per_s=count / seconds)
        report.check(
            "stream scores are float32 floats",
            all(
                isinstance(t.score, float) and t.hidden[layer].dtype == torch.float32
                for _, _, ts in streams
                for t in ts
            ),
            "every streamed token has a float score and a float32 CPU hidden state",
        )
    except Exception as exc:
        report.failed("stream", exc)

    # 3. teacher forcing --------------------------------------------------------------------------
    from core.engine.scoring import score_batch

    try:
        done = [(m, s, ts) for m, s, ts in streams if ts]
        conversations = [[*m, {"role": "assistant", "content": s.text}] for m, s, _ in done]
        sync(device)
        started = time.perf_counter()
        scored = score_batch(lm, conversations, [layer], [[t.token_id for t in ts] for _, _, ts in done])
        sync(device)
        seconds = time.perf_counter() - started
        count = sum(len(ts) for _, _, ts in done)
        worst = logit = logprob = 0.0
        for item, (_, _, tokens) in zip(scored, done):
            d, lg = score_diffs(probe, item.hidden[layer], tokens, layer)
            worst, logit = max(worst, d), max(logit, lg)
            logprob = max(logprob, float(np.abs(np.array(item.trace.logprobs) - [t.logprob for t in tokens]).max()))
        report.stage(
            "teacher_forcing",
            answers=len(done),
            tokens=count,
            seconds=seconds,
            tokens_per_s=count / seconds,
            max_score_diff=worst,
            max_logit_diff=logit,
            max_logprob_diff=logprob,
        )
        report.check(
            "stream = teacher forcing",
            bool(done) and worst <= tolerance,
            f"max |score difference| {worst:.3g} over {count} tokens (tolerance {tolerance:g}); "
            f"max |logit difference| {logit:.3g}; max |log-prob difference| {logprob:.3g}",
        )
    except Exception as exc:
        report.failed("teacher_forcing", exc)

    # 4. the batched engine -----------------------------------------------------------------------
    from core.base.decoding import DecodingSettings
    from core.engine.batched import GenerationRequest, generate_batched

    answers = []
    try:
        requests = [
            GenerationRequest(m, DecodingSettings(max_new_tokens=new_tokens, **settings[n]), probe=probe, tag=n)
            for n, m in enumerate(shared)
        ]
        sync(device)
        started = time.perf_counter()
        answers = sorted(generate_batched(lm, requests, batch_size=batch_size), key=lambda a: a.request.tag)
        sync(device)
        seconds = time.perf_counter() - started
        count = sum(len(a.tokens) for a in answers)
        report.stage(
            "batched",
            answers=len(answers),
            batch_size=batch_size,
            tokens=count,
            seconds=seconds,
            tokens_per_s=count / seconds,
        )
        worst = logit = 0.0
        with_tokens = [a for a in answers if a.tokens]
        for start in range(0, len(with_tokens), 16):
            chunk = with_tokens[start : start + 16]
            forced = score_batch(
                lm,
                [[*a.request.messages, {"role": "assistant", "content": a.text}] for a in chunk],
                [layer],
                [[t.token_id for t in a.tokens] for a in chunk],
            )
            for item, answer in zip(forced, chunk):
                d, lg = score_diffs(probe, item.hidden[layer], answer.tokens, layer)
                worst, logit = max(worst, d), max(logit, lg)
        report.stage("batched", max_score_diff=worst, max_logit_diff=logit)
        report.check(
            "batched = teacher forcing",
            bool(with_tokens) and worst <= tolerance,
            f"max |score difference| {worst:.3g} over {count} tokens (tolerance {tolerance:g}); "
            f"max |logit difference| {logit:.3g}",
        )
        same = sum(
            [t.token_id for t in a.tokens] == [t.token_id for t in ts] for a, (_, _, ts) in zip(answers, streams)
        )
        report.stage("batched", same_tokens_as_lone_stream=f"{same} of {len(streams)} answers")
    except Exception as exc:
        report.failed("batched", exc)

    # 5. extraction and the activation cache ------------------------------------------------------
    from core.base.types import Generation, Span
    from core.engine.activations import ActivationCache, extract_activations

    generations = [
        Generation(
            [*a.request.messages, {"role": "assistant", "content": a.text}],
            extra={"tokens": {"ids": [t.token_id for t in a.tokens]}},
        )
        for a in answers
        if a.tokens
    ]
    try:
        cache = ActivationCache(lm, root=workdir / "activations")
        count = sum(len(g.extra["tokens"]["ids"]) for g in generations)
        timed = {}
        for name, kwargs in (
            ("uncached", {"use_cache": False}),
            ("cold", {"cache": cache}),
            ("warm", {"cache": cache}),
        ):
            sync(device)
            started = time.perf_counter()
            timed[name] = extract_activations(lm, generations, [layer], token_budget=args.token_budget, **kwargs)
            sync(device)
            seconds = time.perf_counter() - started
            report.stage("extraction", **{f"{name}_seconds": seconds, f"{name}_tokens_per_s": count / seconds})
        report.stage("extraction", answers=len(generations), tokens=count, stored_as=str(cache.dtype))
        cold, warm = timed["cold"], timed["warm"]
        exact = all(
            torch.equal(a.hidden[layer], b.hidden[layer]) and a.hidden[layer].dtype == torch.float32
            for a, b in zip(cold, warm)
        )
        rounding = max(
            float((cache.as_stored(a.hidden[layer]) - a.hidden[layer]).abs().max()) for a in timed["uncached"]
        )
        report.check(
            "extraction cache",
            exact and len(cold) == len(generations),
            f"warm = cold exactly, float32 on the CPU, stored as {cache.dtype} (largest rounding of a "
            f"state by storing it: {rounding:.3g})",
        )
        worst = 0.0
        for item, answer in zip(timed["uncached"], [a for a in answers if a.tokens]):
            worst = max(worst, score_diffs(probe, item.hidden[layer], answer.tokens, layer)[0])
        report.check(
            "extraction = batched scores",
            worst <= tolerance,
            f"max |score difference| {worst:.3g} (tolerance {tolerance:g}; padded batches of up to "
            f"{args.token_budget} tokens)",
        )
    except Exception as exc:
        report.failed("extraction", exc)

    # 6. LoRA training steps on the (bfloat16) model ----------------------------------------------
    from core.probes.lora import LoraSettings, train_lora_probe

    try:
        usable = [g for g in generations if len(g.completion) >= 12][:8]
        for n, g in enumerate(usable):
            g.spans = [Span(0, 10, "Not Supported" if n % 2 else "Supported")]
        count = sum(len(g.extra["tokens"]["ids"]) for g in usable)
        sync(device)
        started = time.perf_counter()
        result = train_lora_probe(lm, usable, layer, LoraSettings(epochs=1, batch_answers=4, kl_weight=1.0))
        sync(device)
        seconds = time.perf_counter() - started
        losses = [h["loss"] for h in result.history]
        report.stage(
            "lora",
            answers=len(usable),
            steps=len(losses),
            seconds=seconds,
            tokens_per_s=count / seconds,
            losses=[round(x, 4) for x in losses],
        )
        head = result.head.linear.weight
        report.check(
            "lora trains",
            bool(losses)
            and all(math.isfinite(x) for x in losses)
            and head.dtype == torch.float32
            and head.device.type == "cpu",
            f"{len(losses)} steps, losses {', '.join(f'{x:.3f}' for x in losses)}; head {head.dtype} on {head.device}",
        )
        del result
    except Exception as exc:
        report.failed("lora", exc)

    if device.type == "cuda":
        report.stage("memory", peak_gib=torch.cuda.max_memory_allocated() / 2**30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument(
        "--dtype", default=None, choices=["float32", "bfloat16"], help="default: bfloat16 on a GPU, float32 on the CPU"
    )
    parser.add_argument("--size", default="1b", choices=sorted(SIZES), help="1b (the GPU check) or tiny (seconds)")
    parser.add_argument("--new-tokens", type=int, default=None, help="per answer (default: 128; tiny 16)")
    parser.add_argument("--prompts", type=int, default=None, help="prompts for the batched engine (default 64; tiny 6)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 64; tiny 3")
    parser.add_argument("--token-budget", type=int, default=16384, help="padded tokens per extraction pass")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    report = Report()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="probelens-gpu-check-") as tmp:
        os.environ["PROBELENS_CACHE_DIR"] = str(Path(tmp) / "cache")  # model facts: not into the repository
        try:
            run(args, report, Path(tmp))
        except Exception as exc:
            report.failed("setup", exc)
    data = report.data
    data["total_seconds"] = time.perf_counter() - started
    data["extras_imported"] = sorted(name for name in NOT_ON_THE_GPU_MACHINE if name in sys.modules)
    data["core_modules"] = sorted(name for name in sys.modules if name == "core" or name.startswith("core."))
    data["passed"] = bool(data["checks"]) and all(c["passed"] for c in data["checks"])
    print(
        f"{'ALL PASS' if data['passed'] else 'FAIL'} in {data['total_seconds']:.1f} s"
        + (f" (also imported: {', '.join(data['extras_imported'])})" if data["extras_imported"] else ""),
        flush=True,
    )
    if args.out:
        Path(args.out).write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"wrote {args.out}", flush=True)
    return 0 if data["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
