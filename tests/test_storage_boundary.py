"""The storage boundary: orchestration reads and writes through `db` functions only, and those
functions answer what the orchestration used to ask in SQL of its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.base.errors import UserError
from core.base.types import Generation as CoreGeneration
from core.probes.config import ProbeConfig
from db.engine import transaction
from db.events import list_events, log_event
from db.generations import (
    add_generation,
    answer_in_dataset,
    find_generation,
    generation_ids,
    get_or_create_dataset,
)
from db.labels import labels_revision
from db.predictions import scored_generation_ids, store_scores
from db.probes import probe_version_of, register_probe
from db.users import user_by_id

ROOT = Path(__file__).resolve().parents[1]
#: What SQL written outside `db/` looks like: statements and direct session calls.
SQL = re.compile(r"(?<![.\w])(select|insert|update|delete)\(|session\.(add|execute|scalar|scalars|get|delete|query)\(")


def test_orchestration_writes_no_sql_of_its_own():
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "core" / "orchestration").rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if SQL.search(line)
    ]
    assert not found, "store and query through db functions: " + ", ".join(found)


def test_db_holds_no_rules_that_moved_up():
    """The queue's order and reasons, agreement figures and file parsing live above storage now."""
    names = {p.name for p in (ROOT / "db").glob("*.py")}
    assert not names & {"queue_state.py", "formats.py", "agreement_items.py"}
    for path in (ROOT / "db").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "import statistics" not in text and "agreement_report" not in text, path.name
        assert "def span_f1" not in text and "def score_stats" not in text, path.name
        # a run's pace and view (core.base.progress, core.orchestration.run_view) and the
        # reviewer's comparison (core.analysis.review_compare) are not storage either
        for rule in (
            "def eta_seconds",
            "def describe",
            "def outcome_is_news",
            "def disagreement_ranges",
            "def probe_spans",
        ):
            assert rule not in text, (path.name, rule)


def _probe(session, version: int):
    config = ProbeConfig(model_id="tiny-test-model", tokenizer_hash=None, layer=1, hidden_size=4)
    return register_probe(session, artifact_dir="/nowhere", config=config, version=version)


def test_the_lookups_that_replaced_orchestration_sql(sqlite_db, make_generation):
    with transaction(sqlite_db.sessions) as session:
        conversation = [{"role": "user", "content": "Who founded Lviv?"}, {"role": "assistant", "content": "Danylo."}]
        first = add_generation(session, get_or_create_dataset(session, "test-set"), CoreGeneration(conversation))
        second = make_generation(session, "Kyiv is old.", dataset="other")
        probe = _probe(session, 3)
        store_scores(session, 3, second.id, [0.1, 0.2])
        log_event(session, user=None, action="probe.activate", entity="probe", after={"version": 3})
    with transaction(sqlite_db.sessions) as session:
        assert answer_in_dataset(session, "test-set", conversation)
        assert not answer_in_dataset(session, "other", conversation)
        assert not answer_in_dataset(session, "no-such-dataset", conversation)
        assert generation_ids(session) == [first.id, second.id]
        assert find_generation(session, second.id).completion == "Kyiv is old."
        assert find_generation(session, 10**6) is None
        assert scored_generation_ids(session, 3) == {second.id}
        with pytest.raises(UserError, match="unknown probe version 9"):
            scored_generation_ids(session, 9)
        assert probe_version_of(session, probe.id) == 3
        assert user_by_id(session, None) is None and user_by_id(session, 10**6) is None
        assert [e.after for e in list_events(session, action="probe.activate", limit=None)] == [{"version": 3}]


def test_labels_revision_changes_with_answers(sqlite_db, make_generation):
    with transaction(sqlite_db.sessions) as session:
        before = labels_revision(session)
        make_generation(session, "One more answer.")
        assert labels_revision(session) != before


def test_the_import_writer_stores_what_the_orchestration_validated(sqlite_db):
    """Parsing is `core.orchestration.imports`; `db.importer.ImportWriter` only stores its items."""
    from core.orchestration.imports import parse_item
    from core.text.formats import RawItem
    from db.importer import ImportWriter

    record = {
        "conversation": [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "Danylo of Galicia."}],
        "spans": [{"start": 0, "end": 6, "label": "Supported"}],
    }
    first, again = (parse_item(RawItem(n, record), "train") for n in (1, 2))
    with transaction(sqlite_db.sessions) as session:
        writer = ImportWriter(session, "imported", None, None, "file.jsonl", "jsonl")
        writer.write([first, again])
        writer.log("train", None)
        report = writer.report
        assert (report.imported, report.duplicates, report.spans) == (1, 1, 1)
        assert generation_ids(session) == report.generation_ids
        assert answer_in_dataset(session, "imported", record["conversation"])
        assert [e.action for e in list_events(session, action="dataset.import")] == ["dataset.import"]
