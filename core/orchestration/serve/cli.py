"""`python -m core serve`: parse the options, load the model and the probe, run uvicorn."""

from __future__ import annotations

import argparse
import sys


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from core.base import settings
    from core.engine.model import get_model
    from core.orchestration.serve.app import Limits, Service, create_app
    from core.orchestration.serve.probe import ProbeHolder
    from db import open_database

    # The service's own lines (probe swaps, capture errors) on stderr; never a prompt or an answer.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    database = open_database()
    lm = get_model(args.model)
    probes = ProbeHolder(database, lm, args.probe, settings.serve_probe_refresh_seconds())
    probes.start()
    _probe, version = probes.current()
    scored = f"probe v{version}" if version is not None else "no probe (answers unscored)"
    print(f"serving {lm.model_id} with {scored} on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    app = create_app(Service(database, lm, probes, Limits.from_settings()))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def add_commands(sub: argparse._SubParsersAction, register) -> None:
    p = sub.add_parser("serve", help="an OpenAI-compatible chat API whose tokens carry the probe's risk")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default=None, help="HF id or local path (default: embedded SmolLM2)")
    p.add_argument(
        "--probe", default="active", help="active (follow promotions), a version number, or none (default: active)"
    )
    register("serve", cmd_serve)
