"""`python -m core retrain | runs | probes`: the Probes page from the command line.

The orchestration modules import torch; they are imported inside each command so that
`python -m core users list` and the other database commands start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from core.base.errors import UserError
from core.orchestration.run_view import describe
from core.probes.stored_metrics import headline_auc
from db import open_database
from db.models import RunKind, RunStatus
from db.probes import get_probe, list_probes, probe_version_of
from db.train_runs import (
    ACTIVE,
    claim,
    create_run,
    get_run,
    list_runs,
    request_cancel,
)
from db.users import get_user, user_by_id


def _db():
    return open_database()


def _actor_id(database, name: str | None) -> int | None:
    if not name:
        return None

    with database.sessions() as session:
        return get_user(session, name).id


def _print_run(database, run_id: int) -> dict:
    with database.sessions() as session:
        info = describe(get_run(session, run_id))
    print(json.dumps(info, indent=2, default=str))
    return info


def run_here(database, kind: RunKind, params: dict, actor_id: int | None) -> tuple[str, dict]:
    """A run done by this process (no warm worker may take it): its final status and its view,
    printed as JSON, for commands that wait without --background."""
    from core.orchestration.runs import execute_run  # torch: only for commands that run work here

    with database.sessions() as session, session.begin():
        run_id = create_run(session, kind, params, user_by_id(session, actor_id)).id
        claim(session, run_id, os.getpid())
    status = execute_run(database, run_id, claimed=True)
    return status, _print_run(database, run_id)


def exit_code(status: str) -> int:
    """0 succeeded, 130 cancelled (as for Ctrl-C), 1 failed."""
    return 0 if status == RunStatus.SUCCEEDED else (130 if status == RunStatus.CANCELLED else 1)


def _progress_line(stage: str, done: int, total: int, message: str = "") -> None:
    print(f"[{stage}] {done}/{total} {message}", file=sys.stderr)


DEVICE_HELP = (
    "where the model runs: auto (a GPU when there is one), cpu, cuda, cuda:N (default: PROBELENS_DEVICE, else auto)"
)


def device_arg(p: argparse.ArgumentParser, top_level: bool = False) -> None:
    """`--device` on a command that loads a model. It sets PROBELENS_DEVICE for this process, so
    the workers it starts use the same device. A command's own option never hides the one given
    before the command (`python -m core --device cuda retrain ...`)."""
    p.add_argument("--device", default=None if top_level else argparse.SUPPRESS, metavar="DEVICE", help=DEVICE_HELP)


def apply_device(args: argparse.Namespace) -> None:
    """Check `--device` (one clear error if malformed) and hand it to this process and its workers."""
    from core.base import settings

    if getattr(args, "device", None) is not None:
        settings.set_device(args.device)


def lora_layer_fields(text: str | None) -> dict:
    """`--lora-layers A-B` as RetrainParams fields (absent: blocks 0 to the probe's layer)."""
    if not text:
        return {}
    try:
        low, high = text.split("-", 1)
        return {"lora_first_layer": int(low), "lora_last_layer": int(high)}
    except ValueError:
        raise UserError(f"--lora-layers must look like 0-20, got {text!r}") from None


def cmd_retrain(args: argparse.Namespace) -> int:
    from core.orchestration.launcher import start_retrain
    from core.orchestration.retrain import RetrainParams

    database = _db()
    params = RetrainParams(
        model=args.model,
        layer=args.layer,
        datasets=args.dataset or None,
        sources=args.label_source or ["gold", "majority"],
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        val_fraction=args.val_fraction,
        n_boot=args.n_boot,
        activate=args.activate,
        kind=args.kind,
        lora_rank=args.lora_rank,
        kl_weight=args.kl_weight,
        checkpoint_every=args.checkpoint_every,
        **lora_layer_fields(args.lora_layers),
    )
    params.validate()
    actor_id = _actor_id(database, args.actor)
    if args.background:
        run_id = start_retrain(database, params, actor_id)
        print(json.dumps({"run": run_id, "status": "started"}))
        return 0

    status, info = run_here(database, RunKind.RETRAIN, params.to_dict(), actor_id)
    if status == RunStatus.SUCCEEDED and params.activate:
        from core.engine.model import get_model
        from core.orchestration.rescore import rescore

        version = _version_of_probe(database, info["probe_id"])
        rescore(database, get_model(params.model), version, progress=_progress_line)
    return exit_code(status)


def _version_of_probe(database, probe_id: int) -> int:
    with database.sessions() as session:
        return probe_version_of(session, probe_id)


def cmd_seed(args: argparse.Namespace) -> int:
    """The first-run demo as a worker run: waits for it (printing progress) unless --background."""
    from core.orchestration.launcher import start_seed

    database = _db()
    run_id = start_seed(database, _actor_id(database, args.actor), size=args.size, model=args.model)
    if args.background:
        print(json.dumps({"run": run_id, "status": "started"}))
        return 0
    last = None
    while True:
        with database.sessions() as session:
            run = get_run(session, run_id)
            status, message = run.status, run.message
        if message and message != last:
            print(message, file=sys.stderr)
            last = message
        if status not in ACTIVE:
            break
        time.sleep(0.5)
    return exit_code(_print_run(database, run_id)["status"])


def cmd_runs(args: argparse.Namespace) -> int:
    database = _db()
    if args.cancel is not None:
        with database.sessions() as session, session.begin():
            request_cancel(session, args.cancel, None)
        print(f"cancel requested for run {args.cancel}", file=sys.stderr)
        return 0
    if args.resume is not None:
        from core.orchestration.launcher import resume_batch

        run_id = resume_batch(database, args.resume, None)
        print(f"batch run {run_id} started: the prompts of run {args.resume} without an answer", file=sys.stderr)
        return 0
    with database.sessions() as session, session.begin():
        runs = [describe(r) for r in list_runs(session, limit=args.limit)]
    print(json.dumps(runs, indent=2, default=str))
    return 0


def cmd_probes(args: argparse.Namespace) -> int:
    from core.orchestration.launcher import promote_and_rescore
    from core.orchestration.registry import promote, rollback_target, upload_probe

    database = _db()
    action = args.probes_command
    if action == "list":
        with database.sessions() as session:
            rows = [
                {
                    "version": p.version,
                    "active": p.active,
                    "layer": p.layer,
                    "path": p.artifact_path,
                    "training_data_hash": p.training_data_hash,
                    "parent_version": p.parent_version,
                    "created_at": p.created_at.isoformat(),
                    "span_max_auc": headline_auc(p.metrics),
                }
                for p in list_probes(session)
            ]
        print(json.dumps(rows, indent=2))
    elif action in ("promote", "rollback"):
        version = args.version if action == "promote" else rollback_target(database)
        if version is None:
            raise UserError("nothing to roll back to: no earlier active version is known")
        actor = _actor_id(database, args.actor)
        if args.no_rescore:
            promote(database, version, actor)
        else:
            run_id = promote_and_rescore(database, version, actor, args.model)
            print(json.dumps({"active": version, "rescore_run": run_id}))
        print(f"v{version} is active", file=sys.stderr)
    elif action == "rescore":
        from core.engine.model import get_model
        from core.orchestration.rescore import rescore

        with database.sessions() as session:
            get_probe(session, args.version)
        counts = rescore(
            database, get_model(args.model), args.version, only_missing=not args.all, progress=_progress_line
        )
        print(json.dumps(counts))
    elif action == "export":
        from core.orchestration.probe_cache import database_version_dir
        from core.probes.archive import pack_probe

        Path(args.out).write_bytes(pack_probe(database_version_dir(database, args.version)))
        print(f"wrote {args.out}", file=sys.stderr)
    elif action == "import":
        from core.engine.model import get_model

        data = _read_upload(args.file)
        version = upload_probe(database, get_model(args.model), data, _actor_id(database, args.actor))
        print(json.dumps({"version": version}))
    elif action == "import-paper":
        from core.engine.model import get_model
        from core.orchestration.registry import import_paper_probe

        path = Path(args.source)
        source: Path | bytes = _read_upload(args.source) if path.is_file() else path
        version = import_paper_probe(database, get_model(args.model), source, _actor_id(database, args.actor))
        print(json.dumps({"version": version, "source": "paper"}))
    return 0


def _read_upload(name: str) -> bytes:
    """An uploaded probe file's bytes; a missing or oversized file is one clear message."""
    from core.probes.archive import MAX_UPLOAD_BYTES

    path = Path(name)
    try:
        if path.stat().st_size > MAX_UPLOAD_BYTES:
            raise UserError(f"{name} is larger than the {MAX_UPLOAD_BYTES // 1_000_000} MB limit for a probe file")
        return path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {name}: {e.strerror or e}") from None


def add_commands(sub: argparse._SubParsersAction, register) -> None:
    p = sub.add_parser("retrain", help="train a new probe version on the team's labels (gold, else majority)")
    p.add_argument("--model", default=None)
    device_arg(p)
    p.add_argument("--layer", type=int, default=None)
    p.add_argument("--dataset", action="append", help="repeat for several; default: all datasets")
    p.add_argument(
        "--label-source",
        action="append",
        choices=["gold", "majority", "judge"],
        help="which labels count (repeat; default gold and majority): judge = LLM judges' sets where no person labelled",
    )
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--activate", action="store_true", help="make it the active probe and re-score stored answers")
    p.add_argument("--kind", choices=["linear", "lora"], default="linear")
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--lora-layers", default=None, metavar="A-B")
    p.add_argument("--kl-weight", type=float, default=10.0)
    p.add_argument("--checkpoint-every", type=int, default=None, help="LoRA: steps between checkpoints scored")
    p.add_argument("--background", action="store_true", help="start a worker process and return at once")
    p.add_argument("--actor", default=None)
    register("retrain", cmd_retrain)

    p = sub.add_parser("seed", help="the first-run demo data and demo probe, as a worker run")
    p.add_argument("--size", type=int, default=None, help="answers (default: PROBELENS_DEMO_SIZE or 200)")
    p.add_argument("--model", default=None)
    device_arg(p)
    p.add_argument("--background", action="store_true", help="start the worker and return at once")
    p.add_argument("--actor", default=None)
    register("seed", cmd_seed)

    p = sub.add_parser("runs", help="list runs, cancel one, or resume a cancelled or failed batch")
    p.add_argument("--cancel", type=int, default=None, metavar="RUN")
    p.add_argument(
        "--resume", type=int, default=None, metavar="RUN", help="answer only the prompts of batch RUN not yet answered"
    )
    p.add_argument("--limit", type=int, default=20)
    register("runs", cmd_runs)

    p = sub.add_parser("probes", help="probe versions: list, promote, rollback, rescore, export, import, import-paper")
    p.add_argument("--actor", default=None)
    p.add_argument("--model", default=None)
    device_arg(p)
    ps = p.add_subparsers(dest="probes_command", required=True)
    ps.add_parser("list")
    q = ps.add_parser("promote")
    q.add_argument("version", type=int)
    q.add_argument("--no-rescore", action="store_true")
    q = ps.add_parser("rollback")
    q.add_argument("--no-rescore", action="store_true")
    q = ps.add_parser("rescore")
    q.add_argument("version", type=int)
    q.add_argument("--all", action="store_true", help="also answers that already have scores")
    q = ps.add_parser("export")
    q.add_argument("version", type=int)
    q.add_argument("--out", required=True)
    q = ps.add_parser("import")
    q.add_argument("file")
    q = ps.add_parser(
        "import-paper",
        help="a probe written by the paper's code: a folder (or zip) with probe_head.bin and probe_config.json",
    )
    q.add_argument("source")
    register("probes", cmd_probes)
