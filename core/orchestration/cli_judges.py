"""`python -m core references | judges | label`: the LLM judge from the command line (issue #24).

Registered into `core.orchestration.cli`'s parser. Database-only commands import no torch; the
`label` command runs the run in this process (like `retrain`) unless `--background`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.base.errors import UserError


def _db():
    from db import open_database

    return open_database()


def _actor(session, name: str | None):
    from db.users import get_user

    return get_user(session, name) if name else None


def cmd_references(args: argparse.Namespace) -> int:
    from db import references

    database = _db()
    if args.references_command == "import":
        from core.text.references import read_references

        docs = read_references(args.path)
        with database.sessions() as session, session.begin():
            name = args.name or Path(args.path).stem
            result = references.import_documents(session, docs, collection=name, actor=_actor(session, args.actor))
        print(json.dumps(result))
    elif args.references_command == "list":
        with database.reading() as session:
            print(json.dumps(references.list_collections(session), indent=2, ensure_ascii=False))
    elif args.references_command == "search":
        with database.reading() as session:
            hits = references.search_passages(session, args.query, args.limit)
        rows = [{"id": h.id, "title": h.title, "url": h.url, "collection": h.collection, "text": h.text} for h in hits]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    return 0


def _judge_row(judge) -> dict:
    return {
        "name": judge.name,
        "base_url": judge.base_url,
        "model": judge.model,
        "api_key_env": judge.api_key_env,
        "price_input_per_m": judge.price_input_per_m,
        "price_output_per_m": judge.price_output_per_m,
        "concurrency": judge.concurrency,
        "timeout_s": judge.timeout_s,
        "account": judge.bot_name,
    }


def cmd_judges(args: argparse.Namespace) -> int:
    from db import judges

    database = _db()
    action = args.judges_command
    if action == "add":
        with database.sessions() as session, session.begin():
            judge = judges.add_judge(
                session,
                args.name,
                base_url=args.base_url,
                model=args.model,
                api_key_env=args.api_key_env,
                price_input_per_m=args.price_input,
                price_output_per_m=args.price_output,
                concurrency=args.concurrency,
                timeout_s=args.timeout,
                actor=_actor(session, args.actor),
            )
        print(json.dumps(_judge_row(judge)))
    elif action == "list":
        with database.reading() as session:
            print(json.dumps([_judge_row(j) for j in judges.list_judges(session)], indent=2, ensure_ascii=False))
    elif action == "remove":
        with database.sessions() as session, session.begin():
            judges.remove_judge(session, args.name, actor=_actor(session, args.actor))
        print(f"removed judge {args.name}", file=sys.stderr)
    elif action == "instructions":
        if args.instructions_command == "show":
            with database.reading() as session:
                found = judges.instructions(session, args.version)
            print(f"# version {found.version}" + (f" by {found.author}" if found.author else " (built in)"))
            print(found.body)
        else:
            body = _read_text(args.file)
            with database.sessions() as session, session.begin():
                saved = judges.save_instructions(session, body, actor=_actor(session, args.actor))
            print(json.dumps({"version": saved.version}))
    return 0


def _read_text(name: str) -> str:
    try:
        return Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {name}: {getattr(exc, 'strerror', None) or exc}") from None


def cmd_label(args: argparse.Namespace) -> int:
    from core.orchestration.cli_runs import exit_code, run_here
    from core.orchestration.label_run import LabelParams
    from core.orchestration.launcher import start_label
    from db.models import RunKind
    from db.users import get_user

    database = _db()
    params = LabelParams(args.dataset, args.judge, args.split, args.unlabelled_only, args.instructions)
    with database.reading() as session:
        actor_id = get_user(session, args.actor).id if args.actor else None
    if args.background:
        print(json.dumps({"run": start_label(database, params, actor_id), "status": "started"}))
        return 0
    status, _info = run_here(database, RunKind.LABEL, params.checked(database).to_dict(), actor_id)
    return exit_code(status)


def add_commands(sub: argparse._SubParsersAction, register) -> None:
    """Add `references`, `judges` and `label` to the main parser."""
    p = sub.add_parser("references", help="reference documents the LLM judge retrieves evidence from")
    p.add_argument("--actor", default=None, help="user recorded in the event log")
    rs = p.add_subparsers(dest="references_command", required=True)
    q = rs.add_parser("import", help="a Markdown, text or JSONL (title/text/url) file, or a folder of them")
    q.add_argument("path")
    q.add_argument("--name", default=None, help="the collection's name (default: the file or folder name)")
    rs.add_parser("list")
    q = rs.add_parser("search", help="the passages that best match QUERY")
    q.add_argument("query")
    q.add_argument("--limit", type=int, default=5)
    register("references", cmd_references)

    p = sub.add_parser("judges", help="LLM judges (OpenAI-compatible endpoints) and their instructions")
    p.add_argument("--actor", default=None, help="user recorded in the event log")
    js = p.add_subparsers(dest="judges_command", required=True)
    q = js.add_parser("add")
    q.add_argument("name")
    q.add_argument("--base-url", required=True, help="e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1")
    q.add_argument("--model", required=True)
    q.add_argument("--api-key-env", default=None, help="the NAME of the environment variable holding the key")
    q.add_argument("--price-input", type=float, default=None, help="price per million input tokens")
    q.add_argument("--price-output", type=float, default=None, help="price per million output tokens")
    q.add_argument("--concurrency", type=int, default=4)
    q.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    js.add_parser("list")
    js.add_parser("remove").add_argument("name")
    q = js.add_parser("instructions", help="the judge's versioned instructions")
    ins = q.add_subparsers(dest="instructions_command", required=True)
    ins.add_parser("show").add_argument("--version", type=int, default=None)
    ins.add_parser("set").add_argument("--file", required=True)
    register("judges", cmd_judges)

    p = sub.add_parser("label", help="an LLM judge pre-annotates a dataset (a `label` run)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--judge", required=True)
    p.add_argument("--split", default=None)
    p.add_argument("--unlabelled-only", action="store_true", help="only answers nobody labelled")
    p.add_argument("--instructions", type=int, default=None, help="instructions version (default: the newest)")
    p.add_argument("--background", action="store_true", help="start a worker and return")
    p.add_argument("--actor", default=None, help="user recorded as the run's starter")
    register("label", cmd_label)
