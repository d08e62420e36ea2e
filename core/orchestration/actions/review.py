"""The Review page's actions: the settle queue, one answer's sets, saving gold, assigning work."""

from __future__ import annotations

from typing import Any

from core.analysis.agreement import judge_agreement
from core.base.types import Span
from core.orchestration import work_queue
from core.orchestration.actions.acting import Actor, reading, writing
from core.orchestration.team import agreement_items
from db import Database, assignments
from db import review as reviewing
from db.judges import bot_names as judge_accounts
from db.users import list_users

PAGE = "review"
ReviewBundle = reviewing.ReviewBundle


def review_queue(
    storage: Database, actor: Actor, dataset: str, probe_version: int | None, limit: int = 300
) -> list[work_queue.QueueItem]:
    """Every answer of `dataset`, most disagreement first (the page picks the unsettled ones)."""
    with reading(storage, actor, PAGE) as (session, me):
        return work_queue.queue(
            session,
            me,
            dataset=dataset,
            sort="disagreement",
            label_state="any",
            probe_version=probe_version,
            limit=limit,
        )


def review_bundle(storage: Database, generation_id: int, probe_version: int | None) -> ReviewBundle:
    """One answer with every annotator's set, the gold set and the probe's spans."""
    with storage.sessions() as session:
        return reviewing.review_bundle(session, generation_id, probe_version)


def agreement_data(storage: Database, dataset: str) -> tuple[list[Any], list[str], list[int]]:
    """(items, annotators, generation ids) for the agreement report of `dataset`."""
    with storage.sessions() as session:
        return agreement_items(session, dataset)


def judge_agreement_rows(storage: Database, dataset: str) -> list[dict[str, Any]]:
    """Each LLM judge of `dataset` against each person and gold, overall and per label (κ, span F1)."""
    with storage.sessions() as session:
        items, annotators, _ids = agreement_items(session, dataset, include_gold=True)
        judges = sorted(judge_accounts(session) & set(annotators))
    others = [name for name in annotators if name not in judges]
    return [row for judge in judges for row in judge_agreement(items, judge, others)]


def active_user_names(storage: Database) -> list[str]:
    """The people work can be assigned to (an LLM judge's account is not one: it labels by a run)."""
    with storage.sessions() as session:
        return [u.name for u in list_users(session) if u.active and not u.bot]


GoldRemovalError = reviewing.GoldRemovalError
GoldVersion = reviewing.GoldVersion


def save_merged_gold(
    storage: Database,
    actor: Actor,
    generation_id: int,
    spans: list[Span],
    expected_version: int,
    *,
    allow_removal: bool = False,
) -> int:
    """Store the merged spans as gold over `expected_version`; returns the new gold version.
    ConflictError (a UserError) when another reviewer saved first; GoldRemovalError when the
    save would remove spans of the current gold and `allow_removal` is not set."""
    with writing(storage, actor, PAGE) as (session, me):
        saved = reviewing.save_gold(
            session,
            generation_id,
            spans,
            expected_version=expected_version,
            reviewer=me,
            decision="merged span by span",
            allow_removal=allow_removal,
        )
        return saved.version


def take_annotator_set(
    storage: Database,
    actor: Actor,
    generation_id: int,
    name: str,
    expected_version: int,
    *,
    allow_removal: bool = False,
) -> None:
    """Gold := `name`'s current set of the answer (GoldRemovalError as for a merge)."""
    with writing(storage, actor, PAGE) as (session, me):
        reviewing.pick_annotator(
            session, generation_id, name, expected_version=expected_version, reviewer=me, allow_removal=allow_removal
        )


def gold_history(storage: Database, generation_id: int) -> list[GoldVersion]:
    """Every version of the answer's gold set, oldest first."""
    with storage.reading() as session:
        return reviewing.gold_history(session, generation_id)


def revert_gold(storage: Database, actor: Actor, generation_id: int, version: int, expected_version: int) -> int:
    """Gold := the spans of gold `version`, stored as a new version; returns its number."""
    with writing(storage, actor, PAGE) as (session, me):
        return reviewing.revert_gold(
            session, generation_id, version, expected_version=expected_version, reviewer=me
        ).version


def assign_work(
    storage: Database, actor: Actor, dataset: str, k: int, annotators: list[str], lease_hours: float
) -> int:
    """Give every answer of `dataset` k of `annotators`; returns how many assignments were made."""
    with writing(storage, actor, PAGE) as (session, me):
        return assignments.assign(session, dataset, k, annotators, lease_hours=lease_hours, actor=me)
