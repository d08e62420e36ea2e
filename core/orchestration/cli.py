"""`python -m core ...`: the command-line face of every core operation.

Results go to stdout (JSON or files), progress to stderr. Bad input exits 2 with one
line on stderr; nothing is written in that case.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from core.base.errors import UserError
from core.base.progress import Cancelled
from core.orchestration import cli_db as db_cli
from core.orchestration import cli_judges, cli_runs
from core.orchestration.serve import cli as serve_cli

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _COMMANDS[name] = fn
        return fn

    return register


class StderrProgress:
    """Progress lines on stderr, at most a few per second per stage."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._last: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int, message: str = "") -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if done < total and now - self._last.get(stage, 0.0) < 0.5:
            return
        self._last[stage] = now
        print(f"[{stage}] {done}/{total} {message}".rstrip(), file=sys.stderr, flush=True)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False))


def _load_generations(path: str, need_labels: bool) -> list:
    from core.text.interchange import read_generations

    report = read_generations(path)
    for line_no, span in report.unmatched:
        print(f"warning: line {line_no}: span {span.text!r} not found in the answer ({span.reason})", file=sys.stderr)
    if need_labels and not any(g.spans for g in report.generations):
        raise UserError(f"{path}: no labelled spans to train or evaluate on")
    return report.generations


def _model(name: str | None):
    from core.engine.model import get_model

    return get_model(name)


@command("generate")
def cmd_generate(args: argparse.Namespace) -> int:
    from core.base.decoding import DecodingSettings
    from core.engine.batched import MAX_BATCH
    from core.engine.bulk import generate_answers
    from core.text.interchange import generation_to_record, read_prompts, write_jsonl

    if args.batch_size is not None and not 1 <= args.batch_size <= MAX_BATCH:
        raise UserError(f"--batch-size must be between 1 and {MAX_BATCH}")
    settings = DecodingSettings(args.max_new_tokens, args.temperature, args.top_p, args.seed)
    prompts = read_prompts(args.prompts)
    lm = _model(args.model)
    probe = _probe_for(lm, args.probe) if args.probe else None
    progress = StderrProgress(args.quiet)
    answers = generate_answers(
        lm,
        [p.messages for p in prompts],
        settings,
        probe=probe,
        batch_size=args.batch_size,
        progress=progress,
    )
    records: list[dict] = [{} for _ in prompts]
    for answer in answers:  # they end in any order; the file keeps the prompts' order
        answer.generation.id = prompts[answer.index].id
        record = generation_to_record(answer.generation, answer.trace)
        record["finish_reason"] = answer.finish_reason
        records[answer.index] = record
    write_jsonl(args.out, records)
    print(f"wrote {len(records)} generations to {args.out}", file=sys.stderr)
    return 0


def _probe_for(lm, probe_dir: str):
    """The probe folder loaded whole for `lm` (its kind prepares the model it reads)."""
    from core.probes.kinds import load_probe_dir

    return load_probe_dir(lm, probe_dir)


def _train_options(args: argparse.Namespace):
    from core.probes.kinds import TrainOptions

    layers = cli_runs.lora_layer_fields(args.lora_layers)
    return TrainOptions(
        lr=args.lr,
        epochs=args.epochs,
        seed=args.seed,
        extra={
            "rank": args.lora_rank,
            "first_layer": layers.get("lora_first_layer", 0),
            "last_layer": layers.get("lora_last_layer"),
            "kl_weight": args.kl_weight,
        },
    )


@command("train")
def cmd_train(args: argparse.Namespace) -> int:
    from core.probes.kinds import kind_of

    kind = kind_of(args.kind)
    options = _train_options(args)
    kind.check_options(options)  # bad options: one message before the model loads
    generations = _load_generations(args.data, need_labels=True)
    lm = _model(args.model)
    report = kind.train_from_generations(
        lm, generations, args.layer, args.val_fraction, options, progress=StderrProgress(args.quiet)
    )
    kind.save(args.out, report.trained, report.config)
    print(
        f"saved {kind.noun} to {args.out} ({report.n_train} train / {report.n_validation} validation generations)",
        file=sys.stderr,
    )
    _print_json(report.metrics)
    return 0


def _probe_model(probe_dir: str, model: str | None):
    """The probe, loaded for the model it was trained on unless the user names another (then checked)."""
    from core.probes.files import load_probe

    _, config = load_probe(probe_dir)
    lm = _model(model if model is not None else config.model_id)
    return lm, _probe_for(lm, probe_dir)


@command("evaluate")
def cmd_evaluate(args: argparse.Namespace) -> int:
    generations = _load_generations(args.data, need_labels=True)
    lm, probe = _probe_model(args.probe, args.model)
    _print_json(probe.evaluate(lm, generations, args.threshold, StderrProgress(args.quiet)))
    return 0


@command("score")
def cmd_score(args: argparse.Namespace) -> int:
    from core.text.interchange import generation_to_record, write_jsonl

    generations = _load_generations(args.data, need_labels=False)
    lm, probe = _probe_model(args.probe, args.model)
    traces = probe.traces(lm, generations, progress=StderrProgress(args.quiet))
    write_jsonl(args.out, [generation_to_record(g, t) for g, t in zip(generations, traces)])
    print(f"wrote scores of {len(traces)} generations to {args.out}", file=sys.stderr)
    return 0


@command("layers")
def cmd_layers(args: argparse.Namespace) -> int:
    from core.probes.linear import TrainConfig
    from core.probes.pipeline import layer_sweep

    generations = _load_generations(args.data, need_labels=True)
    lm = _model(args.model)
    layers = _parse_layers(args.layers) if args.layers else None
    result = layer_sweep(
        lm,
        generations,
        layers=layers,
        val_fraction=args.val_fraction,
        train_config=TrainConfig(min_steps=100, max_auto_epochs=20, seed=args.seed),
        progress=StderrProgress(args.quiet),
    )
    _print_json(result)
    return 0


def _parse_layers(text: str) -> list[int]:
    """'3,5,8-10' -> [3, 5, 8, 9, 10]."""
    out: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                lo, hi = part.split("-", 1)
                out.extend(range(int(lo), int(hi) + 1))
            elif part.strip():
                out.append(int(part))
    except ValueError:
        raise UserError(f"--layers must look like '3,5,8-10', got {text!r}") from None
    return out


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="ProbeLens: token-level hallucination probes")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    cli_runs.device_arg(parser, top_level=True)

    def model_arg(p: argparse.ArgumentParser, help_text: str = "HF id or local path (default: embedded SmolLM2)"):
        p.add_argument("--model", default=None, help=help_text)
        cli_runs.device_arg(p)

    p = sub.add_parser("generate", help="answer prompts; write interchange JSONL with per-token data")
    p.add_argument("--prompts", required=True, help='JSONL of {"prompt": ...} or {"conversation": [...]}, or .txt')
    p.add_argument("--out", required=True)
    model_arg(p)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--probe", default=None, help="probe directory: also write per-token scores")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="answers generated at once (default: as many as the KV-cache budget holds)",
    )

    p = sub.add_parser("train", help="train a probe on labelled generations; print metrics JSON")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, help="probe directory to write")
    model_arg(p)
    p.add_argument("--layer", type=int, default=None, help="decoder block (default floor(0.95 * layers))")
    p.add_argument("--val-fraction", type=_fraction, default=0.2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--epochs", type=int, default=None, help="default: enough for ~300 optimiser steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--kind",
        choices=["linear", "lora"],  # the kinds of core.probes.kinds.KINDS (listed here to keep --help fast)
        default="linear",
        help="lora: the paper's LoRA probe (adapters on blocks A-B trained with the head)",
    )
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--lora-layers", default=None, metavar="A-B", help="blocks that get adapters (default 0-LAYER)")
    p.add_argument("--kl-weight", type=float, default=10.0, help="weight of KL(frozen || adapted) (LoRA)")

    p = sub.add_parser("evaluate", help="metrics JSON of a probe on labelled generations")
    p.add_argument("--data", required=True)
    p.add_argument("--probe", required=True)
    model_arg(p, "default: the model the probe was trained on")
    p.add_argument("--threshold", type=float, default=0.5)

    p = sub.add_parser("score", help="per-token scores for each generation")
    p.add_argument("--data", required=True)
    p.add_argument("--probe", required=True)
    p.add_argument("--out", required=True)
    model_arg(p, "default: the model the probe was trained on")

    p = sub.add_parser("layers", help="AUC per layer (layer sweep)")
    p.add_argument("--data", required=True)
    model_arg(p)
    p.add_argument("--layers", default=None, help="e.g. '0-29' or '10,20,28' (default: all)")
    p.add_argument("--val-fraction", type=_fraction, default=0.2)
    p.add_argument("--seed", type=int, default=0)

    # The database side (import, export, users, db) is cli_db's; registered here so
    # there is one `python -m core` for everything.
    register = lambda name, fn: _COMMANDS.__setitem__(name, fn)
    db_cli.add_commands(sub, register)
    cli_runs.add_commands(sub, register)
    cli_judges.add_commands(sub, register)
    serve_cli.add_commands(sub, register)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed one usage line; keep exit 2
        return int(exc.code or 0)
    try:
        cli_runs.apply_device(args)
        return _COMMANDS[args.command](args)
    except UserError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    except Cancelled:
        print("cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
