"""The database side of `python -m core`: import, export, users, db.

Registered into `core.orchestration.cli`'s parser; the database is imported lazily, inside the
commands, so the model commands never pay for it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from core.base import settings
from core.base.errors import UserError


def _db():
    from db import open_database

    return open_database()


def _actor(session, name: str | None):
    from db.users import get_user

    return get_user(session, name) if name else None


def cmd_import(args: argparse.Namespace) -> int:
    from core.orchestration.imports import import_file

    database = _db()
    with database.sessions() as session, session.begin():
        report = import_file(
            session,
            args.file,
            dataset=args.dataset,
            split=args.split,
            as_user=args.as_user,
            actor=_actor(session, args.actor),
            source_name=Path(args.file).name,
        )
    for line, text, reason in report.unmatched:
        print(f"warning: line {line}: span {text!r} not found ({reason})", file=sys.stderr)
    print(
        json.dumps(
            {
                "imported": report.imported,
                "duplicates": report.duplicates,
                "spans": report.spans,
                "by_index": report.by_index,
                "by_search": report.by_search,
                "unmatched": len(report.unmatched),
            }
        )
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from db.exporter import export_file

    database = _db()
    with database.sessions() as session:
        export_file(session, args.dataset, args.out, format=args.format, which=args.which, annotator=args.annotator)
    print(f"exported {args.dataset} to {args.out}", file=sys.stderr)
    return 0


def _password(args: argparse.Namespace) -> str:
    if getattr(args, "password", None):
        return args.password
    env = settings.new_password()
    if env:
        return env
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\n")
        if line:
            return line
        raise UserError("no password given: use --password, PROBELENS_NEW_PASSWORD or standard input")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise UserError("the two passwords differ")
    return first


def _one_field(text: str) -> str:
    """A name as one tab-separated field: a tab, newline or other invisible character in an old
    name is shown escaped (\\t, \\u202e), so it cannot forge a column or a line."""
    out = []
    for c in text:
        if c == "\\":
            out.append("\\\\")
        elif c.isprintable() and c not in "\t":
            out.append(c)
        else:
            out.append(c.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def cmd_users(args: argparse.Namespace) -> int:
    from db import users

    database = _db()
    with database.sessions() as session, session.begin():
        actor = _actor(session, args.actor)
        if args.users_command == "add":
            user = users.add_user(session, args.name, _password(args), role=args.role, actor=actor)
            print(f"added {user.name} ({user.role})", file=sys.stderr)
        elif args.users_command == "list":
            for user in users.list_users(session):
                print(f"{_one_field(user.name)}\t{users.shown_role(user)}\t{'active' if user.active else 'inactive'}")
        elif args.users_command == "set-role":
            users.set_role(session, args.name, args.role, actor=actor)
        elif args.users_command == "deactivate":
            users.deactivate(session, args.name, actor=actor)
        elif args.users_command == "reactivate":
            users.reactivate(session, args.name, actor=actor)
        elif args.users_command == "reset-password":
            users.reset_password(session, args.name, _password(args), actor=actor)
        elif args.users_command == "api-key":
            _api_key(session, args, actor)
    return 0


def _api_key(session, args: argparse.Namespace, actor) -> None:
    """create prints the key once (stdout); list prints id, user, name, prefix, last use, capture."""
    from db import api_keys, users

    if args.key_command == "create":
        _row, token = api_keys.create_key(
            session,
            users.get_user(session, args.name),
            args.key_name,
            actor=actor,
            capture=args.capture,
            capture_dataset=args.capture_dataset,
            capture_threshold=args.capture_threshold,
        )
        print(token)
        print("the key is shown once: keep it now", file=sys.stderr)
    elif args.key_command == "list":
        owner = users.get_user(session, args.name) if args.name else None
        for key in api_keys.list_keys(session, owner):
            state = "revoked" if key["revoked"] else "active"
            print(
                f"{key['id']}\t{_one_field(key['user'])}\t{_one_field(key['name'])}\t{key['prefix']}\t{state}\t"
                f"{key['last_used_at'] or 'never used'}\tcapture={key['capture']}"
            )
    elif args.key_command == "revoke":  # one key by --id, else every key of NAME
        owner = users.get_user(session, args.name)
        ids = [args.id] if args.id is not None else [k["id"] for k in api_keys.list_keys(session, owner)]
        for key_id in ids:
            api_keys.revoke_key(session, key_id, actor=actor)


def cmd_db(args: argparse.Namespace) -> int:
    from db import backup, migrate
    from db.engine import default_url, make_engine

    if args.db_command == "upgrade":
        engine = make_engine()
        migrate.upgrade(engine)
        print(f"database at revision {migrate.current_revision(engine)}", file=sys.stderr)
    elif args.db_command == "current":
        print(migrate.current_revision(make_engine()) or "empty")
    elif args.db_command == "backup":
        backup.backup(_db(), Path(args.out))
        print(f"backed up to {args.out}", file=sys.stderr)
    elif args.db_command == "restore":
        backup.restore(default_url(), Path(args.file))
        print(f"restored from {args.file}", file=sys.stderr)
    return 0


def add_commands(sub: argparse._SubParsersAction, register) -> None:
    """Add the database subcommands to the main parser."""
    p = sub.add_parser("import", help="import JSONL / CSV / Parquet / datasets folder into a dataset")
    p.add_argument("file")
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--as-user", default=None, help="store spans as this annotator's set instead of gold")
    p.add_argument("--actor", default=None, help="user recorded in the event log")
    register("import", cmd_import)

    p = sub.add_parser("export", help="export a dataset")
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--format", choices=["jsonl", "conll", "parquet", "datasets"], default="jsonl")
    p.add_argument("--which", choices=["gold", "annotator", "all"], default="gold")
    p.add_argument("--annotator", default=None)
    register("export", cmd_export)

    p = sub.add_parser("users", help="team accounts")
    p.add_argument("--actor", default=None, help="user recorded in the event log")
    users_sub = p.add_subparsers(dest="users_command", required=True)
    q = users_sub.add_parser("add")
    q.add_argument("name")
    q.add_argument("--role", default="annotator", choices=["annotator", "reviewer", "admin"])
    q.add_argument("--password", default=None, help="else PROBELENS_NEW_PASSWORD, stdin, or a prompt")
    users_sub.add_parser("list")
    q = users_sub.add_parser("set-role")
    q.add_argument("name")
    q.add_argument("role", choices=["annotator", "reviewer", "admin"])
    for name in ("deactivate", "reactivate"):
        users_sub.add_parser(name).add_argument("name")
    q = users_sub.add_parser("reset-password")
    q.add_argument("name")
    q.add_argument("--password", default=None)
    q = users_sub.add_parser("api-key", help="keys of the serving API (python -m core serve)")
    keys_sub = q.add_subparsers(dest="key_command", required=True)
    k = keys_sub.add_parser("create", help="make a key for user NAME; prints it once")
    k.add_argument("name")
    k.add_argument("--key-name", default="default", help="to tell a person's keys apart")
    k.add_argument("--capture", choices=["off", "all", "flagged"], default="off")
    k.add_argument("--capture-dataset", default=None, help="dataset that captured answers go into")
    k.add_argument("--capture-threshold", type=float, default=None, help="for --capture flagged: max risk")
    keys_sub.add_parser("list").add_argument("name", nargs="?", default=None)
    k = keys_sub.add_parser("revoke", help="revoke every key of NAME, or one with --id")
    k.add_argument("name")
    k.add_argument("--id", type=int, default=None)
    register("users", cmd_users)

    p = sub.add_parser("db", help="schema migrations, backup and restore")
    db_sub = p.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="migrate to the newest schema")
    db_sub.add_parser("current", help="print the schema revision")
    db_sub.add_parser("backup").add_argument("out")
    db_sub.add_parser("restore").add_argument("file")
    register("db", cmd_db)
