"""The team's notes from `python -m core`: comments, skips and the annotation guidelines.

`comments list|add|resolve`, `skips list|add|remove`, `guidelines show|set --file F`. The same
database functions as the Annotate and Review pages (same checks, one event per change); the
acting person is `--actor NAME` and must have an account. Lists are tab-separated, one row a
line, every user-written field escaped (`_one_field`) so it cannot forge a column or a line.
Registered into `core.orchestration.cli`'s parser; the database is imported inside the commands.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from core.base.errors import UserError
from core.orchestration.cli_db import _db, _one_field

MAX_GUIDELINES_FILE_BYTES = 1_000_000


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "-"


def _actor(session, name: str | None):
    from db.users import get_user

    if not name:
        raise UserError("say who is acting: --actor NAME (an account of this database)")
    return get_user(session, name)


def cmd_comments(args: argparse.Namespace) -> int:
    from db import comments

    database = _db()
    with database.sessions() as session, session.begin():
        if args.notes_command == "list":
            for c in comments.list_comments(
                session, generation_id=args.answer, dataset=args.dataset, open_only=args.open_flags
            ):
                state = ("open flag" if c.open_flag else "resolved flag") if c.flagged else "comment"
                print(
                    f"{c.id}\t{c.generation_id}\t{_one_field(c.dataset)}\t{_one_field(c.author or '-')}\t{state}\t"
                    f"{_when(c.created_at)}\t{_one_field(c.body)}"
                )
        elif args.notes_command == "add":
            row = comments.add_comment(
                session, args.answer, args.text, author=_actor(session, args.actor), flag=args.flag
            )
            print(f"comment {row.id} added to answer #{args.answer}", file=sys.stderr)
        elif args.notes_command == "resolve":
            closed = comments.resolve_flags(session, args.answer, actor=_actor(session, args.actor))
            print(f"resolved {closed} flag{'s' if closed != 1 else ''} on answer #{args.answer}", file=sys.stderr)
    return 0


def cmd_skips(args: argparse.Namespace) -> int:
    from db import skips
    from db.users import get_user

    database = _db()
    with database.sessions() as session, session.begin():
        if args.notes_command == "list":
            user = get_user(session, args.user) if args.user else None
            for s in skips.list_skips(session, user=user, dataset=args.dataset):
                print(f"{s.generation_id}\t{_one_field(s.dataset)}\t{_one_field(s.user)}\t{_when(s.skipped_at)}")
        elif args.notes_command == "add":
            skips.skip(session, args.answer, _actor(session, args.actor))
            print(f"skipped answer #{args.answer} for {args.actor}", file=sys.stderr)
        elif args.notes_command == "remove":
            if not skips.unskip(session, args.answer, _actor(session, args.actor)):
                raise UserError(f"{args.actor} has not skipped answer #{args.answer}; nothing to remove")
            print(f"answer #{args.answer} is back in {args.actor}'s queue", file=sys.stderr)
    return 0


def _read_guidelines(path: str) -> str:
    """The file's text: refused (one message, nothing saved) if missing, too big or not UTF-8."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{path}: no such file")
    if file.stat().st_size > MAX_GUIDELINES_FILE_BYTES:
        raise UserError(f"{path}: larger than {MAX_GUIDELINES_FILE_BYTES:,} bytes; guidelines are a page of text")
    try:
        return file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None


def cmd_guidelines(args: argparse.Namespace) -> int:
    from db import guidelines

    database = _db()
    with database.sessions() as session, session.begin():
        newest = guidelines.current(session)
        if args.notes_command == "show":
            if newest is None:
                raise UserError("no guidelines yet: an admin writes them with `guidelines set --file F`")
            print(
                f"version {newest.version} by {newest.author or '-'} at {_when(newest.created_at)}",
                file=sys.stderr,
            )
            print(newest.body)
        elif args.notes_command == "set":
            text = _read_guidelines(args.file)
            saved = guidelines.save(
                session,
                text,
                actor=_actor(session, args.actor),
                expected_version=newest.version if newest is not None else 0,
            )
            print(f"saved guidelines version {saved.version}", file=sys.stderr)
    return 0


def _answer_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"an answer id is a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"an answer id is positive, not {value}")
    return value


def add_commands(sub: argparse._SubParsersAction, register) -> None:
    """Add `comments`, `skips` and `guidelines` to the main parser."""
    p = sub.add_parser("comments", help="comments and review flags on answers")
    notes = p.add_subparsers(dest="notes_command", required=True)
    q = notes.add_parser("list", help="id, answer, dataset, author, state, time, text (tab-separated)")
    q.add_argument("--answer", type=_answer_id, default=None)
    q.add_argument("--dataset", default=None)
    q.add_argument("--open-flags", action="store_true", help="only flags not yet resolved")
    q = notes.add_parser("add", help="comment on an answer (with --flag: ask a reviewer to look)")
    q.add_argument("answer", type=_answer_id)
    q.add_argument("text")
    q.add_argument("--flag", action="store_true")
    q.add_argument("--actor", required=True, help="the comment's author")
    q = notes.add_parser("resolve", help="close the open flags on an answer")
    q.add_argument("answer", type=_answer_id)
    q.add_argument("--actor", required=True)
    register("comments", cmd_comments)

    p = sub.add_parser("skips", help="answers people skipped (out of their queue)")
    notes = p.add_subparsers(dest="notes_command", required=True)
    q = notes.add_parser("list", help="answer, dataset, user, time (tab-separated)")
    q.add_argument("--user", default=None)
    q.add_argument("--dataset", default=None)
    for name, what in (("add", "skip an answer for --actor"), ("remove", "put it back in --actor's queue")):
        q = notes.add_parser(name, help=what)
        q.add_argument("answer", type=_answer_id)
        q.add_argument("--actor", required=True)
    register("skips", cmd_skips)

    p = sub.add_parser("guidelines", help="the annotation guidelines (markdown, versioned)")
    notes = p.add_subparsers(dest="notes_command", required=True)
    notes.add_parser("show", help="print the newest version")
    q = notes.add_parser("set", help="save a file as the next version (admins)")
    q.add_argument("--file", required=True)
    q.add_argument("--actor", required=True, help="an admin")
    register("guidelines", cmd_guidelines)
