"""`python -m core answers ...`: the Data page's Answers tab from the command line (delete one
answer with its annotations; assign, skip or move chosen answers in bulk).

Database only: the database is imported inside the command, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from core.base.errors import UserError


def parse_ids(text: str) -> list[int]:
    """Answer ids as typed: "3", "3,5,9" or ranges "10-20" (inclusive), mixed; one UserError otherwise."""
    ids: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        first, _, last = part.partition("-")
        try:
            lo, hi = int(first), int(last or first)
        except ValueError:
            raise UserError(f"answer ids: {part!r} is not a number or a range like 10-20") from None
        if lo > hi or lo < 1:
            raise UserError(f"answer ids: {part!r} is not a range of positive ids")
        if hi - lo >= 100_000:
            raise UserError(f"answer ids: {part!r} is too long a range")
        ids.extend(range(lo, hi + 1))
    if not ids:
        raise UserError("answer ids: none given")
    return ids


def cmd_answers(args: argparse.Namespace) -> int:
    from db import answer_admin, open_database
    from db.users import get_user

    ids = parse_ids(args.ids)
    database = open_database()
    with database.sessions() as session, session.begin():
        actor = get_user(session, args.actor) if args.actor else None
        if args.answers_command == "delete":
            if len(ids) != 1:
                raise UserError("delete takes one answer id (it deletes its annotations too)")
            answer_admin.delete_answer(session, ids[0], actor)
            said = f"deleted answer #{ids[0]} with its annotations"
        elif args.answers_command == "assign":
            n = answer_admin.assign_answers(session, ids, args.to, lease_hours=args.lease_hours, actor=actor)
            said = f"assigned {n} of {len(ids)} answers to {args.to}"
        elif args.answers_command == "skip":
            n = answer_admin.skip_answers(session, ids, args.for_user, actor=actor)
            said = f"skipped {n} of {len(ids)} answers for {args.for_user}"
        else:
            n = answer_admin.move_to_split(session, ids, args.to, actor=actor)
            said = f"moved {n} of {len(ids)} answers to {args.to}"
    print(said, file=sys.stderr)
    return 0


def add_commands(sub: argparse._SubParsersAction, register) -> None:
    p = sub.add_parser("answers", help="delete one answer; assign, skip or move chosen answers in bulk")
    p.add_argument("--actor", default=None, help="user recorded in the event log")
    answers_sub = p.add_subparsers(dest="answers_command", required=True)
    q = answers_sub.add_parser("delete", help="delete one answer with its annotations, scores and skips")
    q.add_argument("ids", metavar="ID")
    q = answers_sub.add_parser("assign", help="put answers in an annotator's queue")
    q.add_argument("ids", metavar="IDS", help='e.g. "3,5,10-20"')
    q.add_argument("--to", required=True, metavar="ANNOTATOR")
    q.add_argument("--lease-hours", type=float, default=24)
    q = answers_sub.add_parser("skip", help="skip answers for an annotator (they leave that queue)")
    q.add_argument("ids", metavar="IDS")
    q.add_argument("--for", dest="for_user", required=True, metavar="ANNOTATOR")
    q = answers_sub.add_parser("split", help="move answers to a split")
    q.add_argument("ids", metavar="IDS")
    q.add_argument("--to", required=True, metavar="SPLIT")
    register("answers", cmd_answers)
