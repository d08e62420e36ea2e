"""Reading and cancelling runs (retrain, re-score, batch generation, the demo seed).

A run belongs to the page that starts it; cancelling one needs that page's role, checked in the
cancelling transaction, and the event names who cancelled.
"""

from __future__ import annotations

from typing import Any

from core.base.errors import UserError
from core.orchestration.actions.acting import Actor, checker, writing
from core.orchestration.launcher import start_seed
from core.orchestration.seed import needs_seed
from db import Database, train_runs
from db.models import RunKind
from db.train_runs import ACTIVE as ACTIVE
from db.train_runs import outcome_is_news as outcome_is_news

#: the page whose role a run's kind needs (to cancel it, or to start the seed again)
RUN_PAGES: dict[str, str] = {
    RunKind.RETRAIN: "probes",
    RunKind.RESCORE: "probes",
    RunKind.GENERATE: "data",
    RunKind.SEED: "data",
    RunKind.LABEL: "data",
}


def latest_runs(storage: Database, kinds: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The newest run of each kind (as db.train_runs.describe gives it), after marking dead
    workers' runs failed."""
    with storage.sessions() as session, session.begin():
        train_runs.reap_dead(session)
        found = {kind: train_runs.latest_run(session, kind) for kind in kinds}
        return {kind: train_runs.describe(run) for kind, run in found.items() if run is not None}


def cancel_run(storage: Database, actor: Actor, run_id: int) -> None:
    """Ask a running run to stop; the actor's role must allow the page its kind belongs to."""
    with storage.sessions() as session:
        kind = train_runs.get_run(session, run_id).kind
    with writing(storage, actor, RUN_PAGES.get(kind, "users")) as (session, me):
        train_runs.request_cancel(session, run_id, me)


#: the page whose role may start the first seed by viewing the app (every role opens it)
FIRST_SEED_PAGE = "generate"


def seed_run(storage: Database, actor: Actor) -> int | None:
    """The demo seed's run: started by the first page view that finds no demo data, then only read.

    The viewer's sign-in is checked in the transaction that creates the run, which names them.
    A failed or cancelled seed is not retried on its own; an admin can start it again."""
    with storage.sessions() as session:
        latest = train_runs.latest_run(session, RunKind.SEED)
    if latest is not None:
        return latest.id
    if not needs_seed(storage):
        return None
    try:
        return start_seed(storage, checker(actor, FIRST_SEED_PAGE))
    except UserError:  # another session started it a moment ago (or this sign-in has ended)
        with storage.sessions() as session:
            latest = train_runs.latest_run(session, RunKind.SEED)
        return latest.id if latest else None


def seed_needed(storage: Database) -> bool:
    """Whether the demo data is still missing."""
    return needs_seed(storage)


def restart_seed(storage: Database, actor: Actor) -> int:
    """Start the demo seed again (after it failed or was cancelled); admins only."""
    return start_seed(storage, checker(actor, RUN_PAGES[RunKind.SEED]))
