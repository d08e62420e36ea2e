"""`python -m core serve`: parse the options, load the model and the probe, run uvicorn (or
deploy the same app on Ray Serve with `--ray`)."""

from __future__ import annotations

import argparse
import logging
import sys


def cmd_serve(args: argparse.Namespace) -> int:
    from core.orchestration.serve.app import LOG_FORMAT

    # The service's own lines (probe swaps, capture errors) on stderr; never a prompt or an answer.
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if args.ray:
        from core.orchestration.serve.ray_serve import serve_on_ray

        return serve_on_ray(args)
    if args.replicas is not None:
        from core.base.errors import UserError

        raise UserError("--replicas only applies with --ray")
    import uvicorn

    from core.base import settings
    from core.orchestration.serve.app import Limits, build_app
    from db import open_database

    database = open_database()
    app, probes = build_app(
        database, args.model, args.probe, Limits.from_settings(), settings.serve_probe_refresh_seconds()
    )
    _probe, version = probes.current()
    scored = f"probe v{version}" if version is not None else "no probe (answers unscored)"
    model_id = app.state.service.model_id
    print(f"serving {model_id} with {scored} on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
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
    p.add_argument(
        "--ray",
        action="store_true",
        help="deploy on Ray Serve (PROBELENS_RAY_ADDRESS, else a Ray started here): one replica per GPU",
    )
    p.add_argument(
        "--replicas", type=int, default=None, help="with --ray on a cluster without GPUs: CPU replicas (default 2)"
    )
    register("serve", cmd_serve)
