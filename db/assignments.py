"""Assignments: each generation gets k annotators, each holding a lease.

A lease that runs out (`expire_leases`) hands the item back, so an annotator who went on
holiday cannot hold work hostage; saving a set (`mark_done`) closes the assignment for good.
Functions take a Session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, overload

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.base.errors import UserError
from db.engine import rows_matched
from db.events import log_event
from db.generations import get_dataset
from db.models import (
    GOLD_OWNER,
    AnnotationSet,
    Assignment,
    AssignmentStatus,
    Generation,
    Skip,
    User,
    utcnow,
)

ASSIGNED, DONE, EXPIRED = AssignmentStatus.ASSIGNED.value, AssignmentStatus.DONE.value, AssignmentStatus.EXPIRED.value
IN_CHUNK = 500  # ids per IN (...) list: keeps statements small on both databases


# --- time -------------------------------------------------------------------------------


@overload
def utc(moment: datetime) -> datetime: ...
@overload
def utc(moment: None) -> None: ...
def utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything stored here is UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def clock(now: datetime | None) -> datetime:
    """`now` as aware UTC: SQLite compares datetimes as text, so every bound value must be UTC."""
    return utc(now) if now is not None else utcnow()


def live(moment: datetime):
    """SQL test for an assignment whose lease still holds at `moment` (no expiry = forever)."""
    return and_(
        Assignment.status == ASSIGNED,
        or_(Assignment.lease_expires_at.is_(None), Assignment.lease_expires_at > moment),
    )


def chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), IN_CHUNK):
        yield ids[i : i + IN_CHUNK]


# --- leases -----------------------------------------------------------------------------


def expire_leases(session: Session, now: datetime | None = None) -> int:
    """Turn assignments whose lease ran out into "expired"; returns how many.

    Expired work goes back to the queue (it counts as unassigned again) and `assign` may
    hand it to someone else or renew it. Done assignments never expire.
    """
    statement = (
        update(Assignment)
        .where(
            Assignment.status == ASSIGNED,
            Assignment.lease_expires_at.is_not(None),
            Assignment.lease_expires_at <= clock(now),
        )
        .values(status=EXPIRED)
        .execution_options(synchronize_session="fetch")
    )
    return rows_matched(session.execute(statement)) or 0


def mark_done(session: Session, generation_id: int, user: User, now: datetime | None = None) -> bool:
    """Close the user's assignment for this generation; True if there was one to close.

    Call it whenever the annotator saves their set. An expired assignment is closed too:
    the work arrived late, but it arrived, and it must not be handed out again. `now` is
    accepted for the same injectable clock as the other functions; the table keeps no
    completion time (the annotation.save event has it).
    """
    del now
    statement = (
        update(Assignment)
        .where(Assignment.generation_id == generation_id, Assignment.user_id == user.id, Assignment.status != DONE)
        .values(status=DONE)
        .execution_options(synchronize_session="fetch")
    )
    return (rows_matched(session.execute(statement)) or 0) > 0


# --- assigning --------------------------------------------------------------------------


def _unique_names(annotators: Sequence[str]) -> list[str]:
    """Stripped names in the given order, repeats dropped (order breaks ties in load)."""
    if isinstance(annotators, str) or not all(isinstance(name, str) for name in annotators):
        raise UserError("annotators must be a list of user names")
    names: list[str] = []
    for name in (n.strip() for n in annotators):
        if name and name not in names:
            names.append(name)
    return names


def _check_assign_args(k: Any, n_annotators: int, lease_hours: Any) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise UserError(f"k (annotators per generation) must be a whole number >= 1, not {k!r}")
    if k > n_annotators:
        raise UserError(f"k = {k} needs at least {k} annotators, but {n_annotators} were given")
    if (
        isinstance(lease_hours, bool)
        or not isinstance(lease_hours, (int, float))
        or not (math.isfinite(lease_hours) and lease_hours > 0)
    ):
        raise UserError(f"lease hours must be a positive number, not {lease_hours!r}")


def _users_by_name(session: Session, names: list[str]) -> list[User]:
    """The users in `names` order; UserError naming every unknown or deactivated one."""
    found = {user.name: user for user in session.scalars(select(User).where(User.name.in_(names)))}
    unknown = [name for name in names if name not in found]
    if unknown:
        raise UserError(f"unknown user{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
    inactive = [name for name in names if not found[name].active]
    if inactive:
        raise UserError(
            f"deactivated user{'s' if len(inactive) > 1 else ''} cannot be assigned work: {', '.join(inactive)}"
        )
    models = [name for name in names if found[name].bot]
    if models:
        raise UserError(
            f"an LLM judge's account cannot be assigned work (it labels by a label run): {', '.join(models)}"
        )
    return [found[name] for name in names]


def _covering_users(session: Session, dataset_id: int) -> dict[int, set[int]]:
    """Per generation, who already counts towards k: a live lease, a done assignment, or an own set.

    Expired assignments do not count (that is what expiry is for). Someone who labelled an
    item without being assigned has finished it all the same, so they count and are skipped.
    """
    covered: dict[int, set[int]] = defaultdict(set)
    in_dataset = Generation.dataset_id == dataset_id
    assignments = (
        select(Assignment.generation_id, Assignment.user_id)
        .join(Generation, Generation.id == Assignment.generation_id)
        .where(in_dataset, Assignment.status.in_((ASSIGNED, DONE)))
    )
    sets = (
        select(AnnotationSet.generation_id, AnnotationSet.annotator_id)
        .join(Generation, Generation.id == AnnotationSet.generation_id)
        .where(in_dataset, AnnotationSet.owner != GOLD_OWNER, AnnotationSet.annotator_id.is_not(None))
    )
    for query in (assignments, sets):
        for generation_id, user_id in session.execute(query):
            assert user_id is not None, "both queries select only rows that name a user"
            covered[generation_id].add(user_id)
    return covered


def _skipped_by(session: Session, dataset_id: int) -> dict[int, set[int]]:
    """Per generation, who skipped it: never handed to them again (they do not count towards k)."""
    found: dict[int, set[int]] = defaultdict(set)
    query = (
        select(Skip.generation_id, Skip.user_id)
        .join(Generation, Generation.id == Skip.generation_id)
        .where(Generation.dataset_id == dataset_id)
    )
    for generation_id, user_id in session.execute(query):
        found[generation_id].add(user_id)
    return found


def _expired_rows(session: Session, dataset_id: int, user_ids: list[int]) -> dict[tuple[int, int], int]:
    """(generation, user) -> id of an expired assignment: renewing it keeps the unique key happy."""
    query = (
        select(Assignment.generation_id, Assignment.user_id, Assignment.id)
        .join(Generation, Generation.id == Assignment.generation_id)
        .where(Generation.dataset_id == dataset_id, Assignment.status == EXPIRED, Assignment.user_id.in_(user_ids))
    )
    return {(g, u): a for g, u, a in session.execute(query)}


def _open_load(session: Session, user_ids: list[int]) -> dict[int, int]:
    """Open (live) assignments per user over every dataset: the load to even out."""
    query = (
        select(Assignment.user_id, func.count(Assignment.id))
        .where(Assignment.user_id.in_(user_ids), Assignment.status == ASSIGNED)
        .group_by(Assignment.user_id)
    )
    load = dict.fromkeys(user_ids, 0)
    load.update({user_id: count for user_id, count in session.execute(query)})
    return load


def _plan(
    generation_ids: list[int],
    covered: dict[int, set[int]],
    user_ids: list[int],
    k: int,
    load: dict[int, int],
    skipped: dict[int, set[int]] | None = None,
) -> list[tuple[int, int]]:
    """Greedy: each generation short of k takes the least-loaded users it does not have yet
    (and who did not skip it).

    Ties go to the order the annotators were given, so the result is deterministic; with
    equal starting loads every user ends within one item of the others.
    """
    rank = {user_id: i for i, user_id in enumerate(user_ids)}
    plan: list[tuple[int, int]] = []
    for generation_id in generation_ids:
        have = covered.get(generation_id, set())
        need = k - len(have)
        if need <= 0:
            continue
        passed = (skipped or {}).get(generation_id, set())
        free = sorted((u for u in user_ids if u not in have and u not in passed), key=lambda u: (load[u], rank[u]))
        for user_id in free[:need]:
            plan.append((generation_id, user_id))
            load[user_id] += 1
    return plan


def _write_plan(
    session: Session,
    plan: list[tuple[int, int]],
    expired: dict[tuple[int, int], int],
    moment: datetime,
    expires: datetime,
) -> None:
    """Bulk INSERT the new pairs and bulk UPDATE (by primary key) the renewed expired ones."""
    lease = {"status": ASSIGNED, "leased_at": moment, "lease_expires_at": expires}
    renew = [{"id": expired[pair], **lease} for pair in plan if pair in expired]
    fresh = [{"generation_id": g, "user_id": u, **lease} for g, u in plan if (g, u) not in expired]
    try:
        # A rival `assign` on the same dataset loses at the unique key; the savepoint keeps
        # the caller's transaction usable and nothing of this call is written.
        with session.begin_nested():
            if fresh:
                session.execute(insert(Assignment), fresh)
            if renew:
                session.execute(update(Assignment), renew)
    except IntegrityError:
        raise UserError(
            "someone else assigned work in this dataset at the same moment; nothing was assigned, please try again"
        ) from None


def assign(
    session: Session,
    dataset: str,
    k: int,
    annotators: list[str],
    *,
    lease_hours: float = 24,
    actor: User | None,
    now: datetime | None = None,
) -> int:
    """Give every generation of `dataset` k annotators; returns how many assignments were made.

    A generation counts as covered by users holding a live lease, users whose assignment is
    done, and users who saved their own set for it; only the shortfall is assigned, so
    running this again is safe (it tops up items whose leases expired) and finished work is
    not handed out to an extra annotator; nobody gets an answer they skipped. Unknown or
    deactivated users, an unknown dataset, k < 1 or k > len(annotators) are UserErrors and
    write nothing. New work goes to
    the given annotators with the fewest open assignments first, never twice to the same
    user for one generation. One "assignment.create" event summarises the run.
    """
    names = _unique_names(annotators)
    _check_assign_args(k, len(names), lease_hours)
    found = get_dataset(session, dataset)
    people = _users_by_name(session, names)
    user_ids = [user.id for user in people]
    moment = clock(now)
    expire_leases(session, moment)
    generation_ids = list(
        session.scalars(select(Generation.id).where(Generation.dataset_id == found.id).order_by(Generation.id))
    )
    plan = _plan(
        generation_ids,
        _covering_users(session, found.id),
        user_ids,
        k,
        _open_load(session, user_ids),
        _skipped_by(session, found.id),
    )
    expires = moment + timedelta(hours=lease_hours)
    _write_plan(session, plan, _expired_rows(session, found.id, user_ids), moment, expires)
    per_user = dict.fromkeys(names, 0)
    name_of = {user.id: user.name for user in people}
    for _, user_id in plan:
        per_user[name_of[user_id]] += 1
    log_event(
        session,
        user=actor,
        action="assignment.create",
        entity="assignment",
        dataset=found.name,
        after={
            "k": k,
            "annotators": names,
            "created": len(plan),
            "per_user": per_user,
            "lease_hours": lease_hours,
            "lease_expires_at": expires.isoformat(),
        },
        detail=f"assigned {len(plan)} items of '{found.name}' (k={k}) to {', '.join(names)}",
    )
    return len(plan)
