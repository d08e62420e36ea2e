"""Import (JSONL, CSV, Parquet, datasets folders) and export (JSONL, CoNLL, Parquet, datasets).

Every bad input gets one clear message and changes nothing; import(export(x)) == x.
"""

from __future__ import annotations

import json
import math
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

import core.orchestration.imports as importer
from core.base.errors import UserError
from core.base.progress import Cancelled, CancelToken
from core.base.types import Generation as CoreGeneration
from core.base.types import Span, TokenTrace
from core.orchestration.imports import BadImportError, import_file, preview_import
from core.text.export_formats import bio_tags
from core.text.formats import MAX_IMPORT_ENV
from core.text.tokens import nfc
from db.annotations import get_set, save_annotation_set, spans_of
from db.arrays import pack_floats
from db.engine import transaction
from db.events import list_events
from db.exporter import export_file, export_records
from db.generations import add_generation, content_hash, get_dataset, get_or_create_dataset
from db.models import AnnotationSet, Base, Generation, User

LABELS = ["Not Supported", "Insufficient Information", "Supported", "N/A"]
ANSWER = "The city of Lviv (German: Lemberg) was founded in 1256 by King Daniel."


# --- helpers ---------------------------------------------------------------------------------


def _conv(answer: str, prompt: str = "Tell me about Lviv.") -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def _write_lines(path: Path, lines: list) -> Path:
    """Objects are JSON-encoded; strings are written as they are (for malformed lines)."""
    text = "".join((line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


def _counts(database) -> dict[str, int]:
    with database.sessions() as session:
        return {t.name: session.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}


def _user(database, name: str) -> None:
    with transaction(database.sessions) as session:
        session.add(User(name=name, password_hash="not-a-real-hash", role="annotator", active=True, failed_logins=0))


def _import(database, path, **kwargs):
    kwargs.setdefault("dataset", "wiki")
    kwargs.setdefault("actor", None)
    with transaction(database.sessions) as session:
        return import_file(session, path, **kwargs)


def _snapshot(database, dataset: str) -> dict[str, tuple]:
    """Everything import(export(x)) must keep, keyed by content hash."""
    with database.sessions() as session:
        ds = get_dataset(session, dataset)
        rows = session.scalars(select(Generation).where(Generation.dataset_id == ds.id)).all()
        out = {}
        for row in rows:
            gold = get_set(session, row.id, None)
            out[row.content_hash] = (
                row.conversation,
                row.external_id,
                row.model.name if row.model else None,
                row.split,
                row.extra,
                row.token_ids,
                row.token_offsets,
                row.token_texts,
                row.logprobs,
                row.entropies,
                None if gold is None else spans_of(gold),
            )
        return out


GOOD = [
    {
        "id": "lviv",
        "conversation": _conv(ANSWER),
        "annotations": [
            {"span": "Lemberg", "index": 26, "label": "Not Supported", "verification_note": "German name"},
            {"span": "1256", "label": "Supported"},
            {"span": "Kyiv", "index": 3, "label": "Not Supported"},
        ],
    },
    {
        "conversation": _conv("Cafe\u0301 in Zürich 😀 東京", "Where?"),
        "spans": [{"start": 0, "end": 4, "label": "supported"}],
        "split": "test",
        "model": "tiny",
        "topic": "cafés",
    },
    {"conversation": _conv("Nothing to see.", "Anything?"), "annotations": []},
    {"conversation": _conv("Not annotated yet.", "Later?")},
]


# --- JSONL import -----------------------------------------------------------------------------


def test_import_jsonl_spans_sets_events(any_db, tmp_path):
    _user(any_db, "importer")
    path = _write_lines(tmp_path / "paper.jsonl", GOOD)
    with transaction(any_db.sessions) as session:
        actor = session.scalar(select(User).where(User.name == "importer"))
        report = import_file(session, path, dataset=" wiki ", actor=actor)
    assert (report.imported, report.duplicates, report.spans, report.by_index, report.by_search) == (4, 0, 3, 2, 1)
    assert report.unmatched == [(1, "Kyiv", "index 3 does not match; text not found in the completion")]
    assert len(report.generation_ids) == 4 and (report.dataset, report.format) == ("wiki", "jsonl")
    with any_db.sessions() as session:
        rows = [session.get(Generation, i) for i in report.generation_ids]
        assert [r.split for r in rows] == ["train", "test", "train", "train"]
        assert rows[1].completion == "Café in Zürich 😀 東京" and rows[1].extra == {"topic": "cafés"}
        assert rows[1].model.name == "tiny" and rows[0].external_id == "lviv"
        assert all(r.created_by == actor.id for r in rows)
        gold = [get_set(session, r.id, None) for r in rows]
        assert spans_of(gold[0]) == [Span(26, 33, "Not Supported", "German name"), Span(50, 54, "Supported")]
        assert spans_of(gold[1]) == [Span(0, 4, "Supported")]
        assert gold[2] is not None and spans_of(gold[2]) == []  # "annotations": [] = annotated, nothing found
        assert gold[3] is None  # no annotations key = not annotated
        saves = list_events(session, action="import")
        assert len(saves) == 3 and all(e.detail == "import of paper.jsonl" and e.user_id == actor.id for e in saves)
        [summary] = list_events(session, action="dataset.import")
        assert summary.dataset == "wiki" and summary.user_id == actor.id
        assert summary.after["file"] == "paper.jsonl" and summary.after["imported"] == 4
        assert summary.after["unmatched"] == 1


def test_import_as_user(sqlite_db, tmp_path):
    _user(sqlite_db, "alice")
    path = _write_lines(tmp_path / "a.jsonl", GOOD[:2])
    before = _counts(sqlite_db)
    with pytest.raises(UserError, match="unknown user 'carol'"):
        _import(sqlite_db, path, as_user="carol")
    assert _counts(sqlite_db) == before
    report = _import(sqlite_db, path, as_user="alice")
    with sqlite_db.sessions() as session:
        alice = session.scalar(select(User).where(User.name == "alice"))
        assert get_set(session, report.generation_ids[0], None) is None
        assert len(spans_of(get_set(session, report.generation_ids[0], alice))) == 2


def test_duplicates_in_file_and_across_imports(sqlite_db, tmp_path):
    decomposed = {"conversation": _conv("Cafe\u0301 in Zürich 😀 東京", "Where?")}
    path = _write_lines(tmp_path / "d.jsonl", [GOOD[0], GOOD[1], GOOD[0], decomposed, GOOD[2]])
    first = _import(sqlite_db, path)
    assert (first.imported, first.duplicates) == (3, 2)
    second = _import(sqlite_db, _write_lines(tmp_path / "e.jsonl", [GOOD[0], GOOD[3]]))
    assert (second.imported, second.duplicates) == (1, 1)
    other = _import(sqlite_db, path, dataset="other")  # duplicates are per dataset
    assert other.imported == 3
    with sqlite_db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Generation)) == 7


BAD_LINES = [
    ("{not json", "invalid JSON"),
    ('{"conversation": [], "x": NaN}', "NaN is not valid JSON"),
    ("[1, 2]", "expected a JSON object, got a list"),
    ({"conversation": "hello"}, '"conversation" must be a list'),
    ({"conversation": [{"role": "user", "content": "only a question"}]}, 'must have role "assistant"'),
    (
        {"conversation": _conv("short"), "spans": [{"start": 2, "end": 9, "label": "Supported"}]},
        "need 0 <= start < end <= 5",
    ),
    ({"conversation": _conv("short"), "annotations": [{"span": "sh", "label": "Made Up"}]}, "unknown label 'Made Up'"),
    (
        {
            "conversation": _conv("short"),
            "spans": [{"start": 0, "end": 3, "label": "Supported"}, {"start": 2, "end": 5, "label": "Not Supported"}],
        },
        "overlaps span 2-5 \\(Not Supported\\) with a different label",
    ),
    ({"conversation": _conv("a\x00b")}, "NUL"),
    ({"conversation": _conv("short"), "split": 7}, '"split" must be a non-empty string'),
    ({"conversation": _conv("short"), "tokens": {"ids": [1]}}, '"tokens" is malformed'),
    ({"conversation": _conv("short"), "id": ["x"]}, '"id" must be a string'),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_one_bad_line_imports_nothing(sqlite_db, tmp_path, line, message):
    path = _write_lines(tmp_path / "bad.jsonl", [GOOD[0], GOOD[1], line, GOOD[2]])
    before = _counts(sqlite_db)
    with pytest.raises(BadImportError, match=f"1 bad line; nothing was imported \\(first: line 3: .*{message}") as info:
        _import(sqlite_db, path)
    assert [n for n, _ in info.value.problems] == [3]
    assert _counts(sqlite_db) == before


def test_every_bad_line_is_listed(sqlite_db, tmp_path):
    lines = [GOOD[0], "{oops", GOOD[1], "", "   ", "17", {"conversation": _conv("x"), "spans": "no"}]
    path = _write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(BadImportError) as info:
        _import(sqlite_db, path)
    assert [n for n, _ in info.value.problems] == [2, 6, 7]
    assert str(info.value).startswith("3 bad lines; nothing was imported (first: line 2: invalid JSON")
    assert _counts(sqlite_db)["generations"] == 0


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", "\ufeff\n".encode()])
def test_empty_file(sqlite_db, tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserError, match="empty.jsonl: no generations found"):
        _import(sqlite_db, path)
    with pytest.raises(UserError, match="no generations found"):
        preview_import(path)


def test_unreadable_inputs(sqlite_db, tmp_path):
    with pytest.raises(UserError, match="no such file"):
        _import(sqlite_db, tmp_path / "missing.jsonl")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="unknown file type '.txt'"):
        _import(sqlite_db, tmp_path / "notes.txt")
    (tmp_path / "latin1.jsonl").write_bytes(json.dumps({"conversation": _conv("x")}).encode() + b"\n\xe9\n")
    with pytest.raises(BadImportError, match="line 2: not UTF-8 text"):
        _import(sqlite_db, tmp_path / "latin1.jsonl")
    good = _write_lines(tmp_path / "good.jsonl", GOOD[:1])
    for kwargs, message in [({"dataset": ""}, "dataset name"), ({"split": " "}, "split")]:
        with pytest.raises(UserError, match=message):
            _import(sqlite_db, good, **kwargs)
    assert _counts(sqlite_db)["generations"] == 0


def test_size_limit_from_environment(sqlite_db, tmp_path, monkeypatch):
    path = _write_lines(tmp_path / "big.jsonl", [{"conversation": _conv("x" * 3000)}])
    monkeypatch.setenv(MAX_IMPORT_ENV, "0.002")  # about 2 KB
    with pytest.raises(UserError, match=r"big.jsonl is 3.0 KB, over the import limit of 0.002 MB \(set PROBELENS"):
        _import(sqlite_db, path)
    with pytest.raises(UserError, match="over the import limit"):
        preview_import(path.read_bytes(), "big.jsonl")
    monkeypatch.setenv(MAX_IMPORT_ENV, "lots")
    with pytest.raises(UserError, match="must be a positive number"):
        _import(sqlite_db, path)
    monkeypatch.setenv(MAX_IMPORT_ENV, "1")
    assert _import(sqlite_db, path).imported == 1


def test_large_files_are_streamed(sqlite_db, tmp_path, monkeypatch):
    """~4 MB: preview holds one line at a time; a re-read import holds one write chunk."""
    answer = "Lviv was founded in 1256 by King Daniel. " * 400
    path = tmp_path / "large.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(250):
            text = f"Answer {i}: {answer}"
            fh.write(
                json.dumps(
                    {"conversation": _conv(text, f"q{i}"), "annotations": [{"span": "1256", "label": "Not Supported"}]}
                )
                + "\n"
            )
    size = path.stat().st_size
    assert size > 4_000_000
    monkeypatch.setattr(importer, "KEEP_PARSED_BYTES", 1_000_000)  # force the two-pass path
    monkeypatch.setattr(importer, "WRITE_CHUNK", 25)
    tracemalloc.start()
    try:
        preview = preview_import(path)
        _, preview_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        report = _import(sqlite_db, path)
        _, import_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert preview.records == 250 and report.imported == 250 and report.spans == 250
    assert preview_peak < size / 4, (preview_peak, size)
    assert import_peak < size / 2, (import_peak, size)


def test_progress_and_cancel(sqlite_db, tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "PROGRESS_EVERY", 2)
    lines = [{"conversation": _conv(f"answer {i}")} for i in range(10)]
    path = _write_lines(tmp_path / "p.jsonl", lines)
    seen = []
    _import(sqlite_db, path, progress=lambda stage, done, total, message="": seen.append((stage, done, total)))
    assert ("validate", 10, 0) in seen and seen[-1] == ("done", 10, 10)
    token = CancelToken()
    token.cancel()
    before = _counts(sqlite_db)
    with pytest.raises(Cancelled):
        _import(sqlite_db, path, dataset="other", cancel=token)
    assert _counts(sqlite_db) == before


def test_preview_reports_without_writing(sqlite_db, tmp_path):
    lines = [GOOD[0], "{bad", GOOD[1], GOOD[0]]
    data = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines).encode()
    preview = preview_import(data, "upload.jsonl", limit=1)
    assert (preview.format, preview.records, preview.duplicates, preview.ok) == ("jsonl", 3, 1, False)
    assert preview.problems == [(2, "invalid JSON (Expecting property name enclosed in double quotes at column 2)")]
    assert (preview.spans, preview.by_index, preview.by_search) == (3, 2, 1)
    assert preview.unmatched == [(1, "Kyiv", "index 3 does not match; text not found in the completion")]
    [row] = preview.rows
    assert row["line"] == 1 and row["id"] == "lviv" and row["spans"][0]["text"] == "Lemberg"
    assert _counts(sqlite_db)["generations"] == 0
    with pytest.raises(UserError, match="needs its file name"):
        preview_import(data)


def test_import_uploaded_bytes(sqlite_db):
    data = json.dumps(GOOD[0]).encode() + b"\n"
    report = _import(sqlite_db, data, source_name="upload.jsonl")
    assert report.imported == 1 and report.file == "upload.jsonl"


# --- CSV, Parquet, datasets import ----------------------------------------------------------------


def test_import_csv_prompt_answer(sqlite_db, tmp_path):
    import pandas as pd

    frame = pd.DataFrame(
        {
            "id": ["007", "", "9"],
            "prompt": ["Where is Lviv?", "Cafe\u0301?", "Empty answer?"],
            "answer": ["Lviv is in Ukraine.", "Café, naïve", ""],
            "spans": [json.dumps([{"start": 0, "end": 4, "label": "Supported"}]), "", "[]"],
            "split": ["test", "", "validation"],
            "source": ["wiki", "wiki", ""],
        }
    )
    path = tmp_path / "table.csv"
    frame.to_csv(path)  # with pandas' index column, which is not data
    preview = preview_import(path)
    assert (preview.format, preview.unit, preview.records) == ("csv", "row", 3)
    report = _import(sqlite_db, path)
    assert (report.imported, report.spans) == (3, 1)
    with sqlite_db.sessions() as session:
        rows = [session.get(Generation, i) for i in report.generation_ids]
        assert [r.external_id for r in rows] == ["007", None, "9"]
        assert [r.split for r in rows] == ["test", "train", "validation"]
        assert rows[1].conversation == _conv("Café, naïve", "Café?") and rows[0].extra == {"source": "wiki"}
        assert spans_of(get_set(session, rows[0].id, None)) == [Span(0, 4, "Supported")]
        assert get_set(session, rows[1].id, None) is None and get_set(session, rows[2].id, None) is not None


def test_import_csv_conversation_and_bad_rows(sqlite_db, tmp_path):
    import pandas as pd

    good = json.dumps(_conv(ANSWER))
    frame = pd.DataFrame(
        {
            "conversation": [good, "[oops", good.replace("assistant", "user"), json.dumps(_conv("ok"))],
            "annotations": [json.dumps([{"span": "Lemberg", "label": "hallucinated"}]), "", "", "{bad"],
        }
    )
    frame.to_csv(tmp_path / "conv.csv", index=False)
    with pytest.raises(
        BadImportError, match="^3 bad rows; nothing was imported \\(first: row 2: column 'conversation'"
    ) as info:
        _import(sqlite_db, tmp_path / "conv.csv")
    assert [n for n, _ in info.value.problems] == [2, 3, 4]
    frame.iloc[[0]].to_csv(tmp_path / "one.csv", index=False)
    assert _import(sqlite_db, tmp_path / "one.csv").by_search == 1
    pd.DataFrame({"question": ["q"], "reply": ["a"]}).to_csv(tmp_path / "cols.csv", index=False)
    with pytest.raises(UserError, match="expected a 'conversation' column, or 'prompt' and 'answer'.*found: question"):
        _import(sqlite_db, tmp_path / "cols.csv")
    (tmp_path / "header.csv").write_text("prompt,answer\n")
    with pytest.raises(UserError, match="no generations found"):
        _import(sqlite_db, tmp_path / "header.csv")


def test_import_parquet_with_native_lists(sqlite_db, tmp_path):
    import pandas as pd

    frame = pd.DataFrame(
        {
            "conversation": [_conv(ANSWER), _conv("Paris is in France.", "Paris?")],
            "annotations": [[{"span": "1256", "index": 50, "label": "Not Supported"}], None],
            "id": [1, 2],
            "score": [0.5, float("nan")],
        }
    )
    frame.to_parquet(tmp_path / "t.parquet")
    report = _import(sqlite_db, tmp_path / "t.parquet")
    assert (report.imported, report.by_index, report.format) == (2, 1, "parquet")
    with sqlite_db.sessions() as session:
        rows = [session.get(Generation, i) for i in report.generation_ids]
        assert [r.external_id for r in rows] == ["1", "2"] and rows[0].extra == {"score": 0.5} and rows[1].extra == {}
    (tmp_path / "fake.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(UserError, match="not a readable Parquet file"):
        _import(sqlite_db, tmp_path / "fake.parquet")


def test_import_datasets_folder_with_splits(sqlite_db, tmp_path):
    import datasets

    train = datasets.Dataset.from_dict({"prompt": ["a?", "b?"], "answer": ["Alpha.", "Beta."]})
    test = datasets.Dataset.from_dict({"prompt": ["c?"], "answer": ["Gamma."]})
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "hf"))
    report = _import(sqlite_db, tmp_path / "hf", split="ignored")
    with sqlite_db.sessions() as session:
        assert [session.get(Generation, i).split for i in report.generation_ids] == ["train", "train", "test"]
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserError, match="not a folder saved with datasets"):
        _import(sqlite_db, tmp_path / "plain")


# --- export ------------------------------------------------------------------------------------------


def _seed(database) -> list[int]:
    """Two generations with tokens on the first; gold + alice on the first, bob only on the second."""
    with transaction(database.sessions) as session:
        alice = User(name="alice", password_hash="x", role="annotator", active=True, failed_logins=0)
        bob = User(name="bob", password_hash="x", role="annotator", active=True, failed_logins=0)
        session.add_all([alice, bob])
        session.flush()
        ds = get_or_create_dataset(session, "wiki")
        text = "Lviv (Lemberg) is old."
        offsets = [(0, 4), (4, 6), (6, 13), (13, 14), (14, 17), (17, 21), (21, 22), (22, 22)]
        trace = TokenTrace(list(range(8)), [text[s:e] for s, e in offsets], offsets, [-0.5] * 8, [1.0] * 8)
        first = add_generation(session, ds, CoreGeneration(_conv(text), id="g1"), split="test", trace=trace)
        second = add_generation(session, ds, CoreGeneration(_conv("Kraków is in Poland 🇵🇱.", "Where?")))
        gold = [Span(0, 4, "Supported"), Span(6, 13, "Not Supported"), Span(18, 21, "Insufficient Information")]
        save_annotation_set(session, first.id, gold, owner=None, expected_version=0, actor=None)
        save_annotation_set(
            session, first.id, [Span(0, 4, "Not Supported")], owner=alice, expected_version=0, actor=alice
        )
        save_annotation_set(
            session, second.id, [Span(13, 19, "Supported"), Span(0, 6, "N/A")], owner=bob, expected_version=0, actor=bob
        )
        return [first.id, second.id]


def test_export_records_which(sqlite_db):
    _seed(sqlite_db)
    with sqlite_db.sessions() as session:
        gold = export_records(session, "wiki")
        assert [r.get("id") for r in gold] == ["g1", None] and [r["split"] for r in gold] == ["test", "train"]
        assert gold[0]["annotations"][1] == {"span": "Lemberg", "index": 6, "label": "Not Supported"}
        assert "annotations" not in gold[1]  # no gold set: not annotated (different from [])
        assert gold[0]["tokens"]["offsets"][0] == [0, 4] and "tokens" not in gold[1]
        bob = export_records(session, "wiki", which="annotator", annotator="bob")
        assert "annotations" not in bob[0]
        assert [a["span"] for a in bob[1]["annotations"]] == ["Kraków", "Poland"]
        every = export_records(session, "wiki", which="all")
        assert every[0]["annotations_by"] == {"alice": [{"span": "Lviv", "index": 0, "label": "Not Supported"}]}
        assert list(every[1]["annotations_by"]) == ["bob"] and "annotations" not in every[1]
        for kwargs, message in [
            ({"which": "annotator"}, "needs the annotator"),
            ({"which": "annotator", "annotator": "carol"}, "unknown user 'carol'"),
            ({"which": "gold", "annotator": "bob"}, "only used with which='annotator'"),
            ({"which": "best"}, "unknown choice"),
        ]:
            with pytest.raises(UserError, match=message):
                export_records(session, "wiki", **kwargs)
        with pytest.raises(UserError, match="unknown dataset 'nope'"):
            export_records(session, "nope")


def test_export_conll(sqlite_db, tmp_path):
    _seed(sqlite_db)
    with sqlite_db.sessions() as session:
        assert export_file(session, "wiki", tmp_path / "gold.conll", format="conll") == 2
        export_file(session, "wiki", tmp_path / "bob.conll", format="conll", which="annotator", annotator="bob")
        with pytest.raises(UserError, match="CoNLL tags one annotation set"):
            export_file(session, "wiki", tmp_path / "all.conll", format="conll", which="all")
        with pytest.raises(UserError, match="unknown export format 'xml'"):
            export_file(session, "wiki", tmp_path / "x.xml", format="xml")
    assert not (tmp_path / "all.conll").exists()
    first, second, end = (tmp_path / "gold.conll").read_text(encoding="utf-8").split("\n\n")
    assert first.splitlines() == [
        "# id = g1",
        "# generation = 1",
        "# split = test",
        "# tokens = model",
        "Lviv\tB-SUP",
        "(\tO",
        "Lemberg\tB-HAL",
        ")\tO",
        "is\tO",
        "old\tB-UNV",
        ".\tO",
    ]
    assert second.splitlines()[3:] == ["# tokens = whitespace", "Kraków\tO", "is\tO", "in\tO", "Poland\tO", "🇵🇱.\tO"]
    assert end == ""
    bob_second = (tmp_path / "bob.conll").read_text(encoding="utf-8").split("\n\n")[1].splitlines()[4:]
    assert bob_second == ["Kraków\tO", "is\tO", "in\tO", "Poland\tB-SUP", "🇵🇱.\tO"]


def test_bio_tags_start_a_new_span_with_b():
    units = [(0, 3), (4, 7), (8, 11), (12, 15)]
    spans = [Span(0, 7, "Not Supported"), Span(8, 11, "Not Supported"), Span(12, 15, "N/A")]
    assert bio_tags(units, spans) == ["B-HAL", "I-HAL", "B-HAL", "O"]


def test_export_refuses_to_clobber_a_foreign_folder(sqlite_db, tmp_path):
    _seed(sqlite_db)
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    with sqlite_db.sessions() as session:
        with pytest.raises(UserError, match="does not hold a saved dataset"):
            export_file(session, "wiki", folder, format="datasets")
        with pytest.raises(UserError, match="is a folder"):
            export_file(session, "wiki", folder, format="jsonl")
        export_file(session, "wiki", tmp_path / "hf", format="datasets")
        export_file(session, "wiki", tmp_path / "hf", format="datasets", which="all")  # replaces its own export
    assert (folder / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "datasets"])
def test_round_trip_every_format(any_db, tmp_path, fmt):
    """import(export(x)) == x, on SQLite and PostgreSQL, for the seeded dataset and a rich import."""
    _seed(any_db)
    _import(any_db, _write_lines(tmp_path / "good.jsonl", GOOD), dataset="paper")
    for name in ("wiki", "paper"):
        out = tmp_path / f"{name}.{fmt}"
        with any_db.sessions() as session:
            export_file(session, name, out, format=fmt, which="all")
        report = _import(any_db, out, dataset=f"{name}-again")
        assert report.unmatched == [] and report.by_search == 0
        assert _snapshot(any_db, f"{name}-again") == _snapshot(any_db, name)
        with any_db.sessions() as session:
            again = export_records(session, f"{name}-again")
            assert again == export_records(session, name)


# --- hypothesis: round trips of awkward text ------------------------------------------------------------

ALPHABET = list("ab yz.,\n") + ["é", "e\u0301", "\u0308", "😀", "👍🏽", "🇫🇷", "東", "京", "한", "\u200d", "\u2028", "ß"]
texts = st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=30).map(lambda parts: nfc("".join(parts)))


@st.composite
def generations(draw) -> tuple[CoreGeneration, TokenTrace | None, list[Span] | None, str]:
    answer = draw(texts)
    prompt = draw(texts)
    cuts = sorted(draw(st.sets(st.integers(0, len(answer)), max_size=6)))
    spans = [
        Span(a, b, draw(st.sampled_from(LABELS)), draw(st.one_of(st.none(), texts)))
        for a, b in zip(cuts[::2], cuts[1::2])
        if a < b
    ]
    trace = None
    if draw(st.booleans()):
        bounds = sorted({0, len(answer), *draw(st.sets(st.integers(0, len(answer)), max_size=8))})
        offsets = list(zip(bounds, bounds[1:]))
        floats = st.one_of(st.just(math.nan), st.floats(-30, 0, width=32))
        trace = TokenTrace(
            draw(st.lists(st.integers(0, 2**31 - 1), min_size=len(offsets), max_size=len(offsets))),
            [answer[s:e] for s, e in offsets],
            offsets,
            draw(st.lists(floats, min_size=len(offsets), max_size=len(offsets))),
            draw(st.lists(floats, min_size=len(offsets), max_size=len(offsets))),
        )
    keys = st.sampled_from(["topic", "source", "n"])
    extra = draw(st.dictionaries(keys, st.one_of(texts, st.integers()), max_size=2))
    gen = CoreGeneration(
        _conv(answer, prompt),
        id=draw(st.one_of(st.none(), texts)),
        model=draw(st.sampled_from([None, "m/one", "m/two"])),
        extra=extra,
    )
    gold = draw(st.one_of(st.none(), st.just(spans)))
    return gen, trace, gold, draw(st.sampled_from(["train", "test"]))


_round = iter(range(10**6))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(generations(), min_size=1, max_size=6), fmt=st.sampled_from(["jsonl", "parquet", "datasets"]))
def test_round_trip_hypothesis(any_db, tmp_path, items, fmt):
    name = f"h{next(_round)}"
    with transaction(any_db.sessions) as session:
        ds = get_or_create_dataset(session, name)
        for gen, trace, gold, split in items:
            row = add_generation(session, ds, gen, split=split, trace=trace)
            if row is not None and gold is not None:
                save_annotation_set(session, row.id, gold, owner=None, expected_version=0, actor=None)
    out = tmp_path / f"{name}.{fmt}"
    with any_db.sessions() as session:
        export_file(session, name, out, format=fmt)
    _import(any_db, out, dataset=f"{name}-again")
    assert _snapshot(any_db, f"{name}-again") == _snapshot(any_db, name)


def test_float_arrays_survive_exactly():
    """What makes token arrays comparable byte for byte: float32 -> JSON -> float32 is lossless."""
    values = [-0.1, -1e-30, math.nan, -17.123456789]
    once = pack_floats(values)
    import numpy as np

    again = pack_floats([float(v) for v in np.frombuffer(once, dtype="<f4")])
    assert once == again


# --- fuzz: random mixes of good and bad lines ---------------------------------------------------------------

_bad_line = st.sampled_from(
    [
        "{oops",
        '{"conversation": NaN}',
        "[]",
        "null",
        '"just a string"',
        json.dumps({"conversation": {"role": "assistant"}}),
        json.dumps({"conversation": [{"role": "user", "content": 3}]}),
        json.dumps({"conversation": _conv("short"), "spans": [{"start": 3, "end": 99, "label": "Supported"}]}),
        json.dumps({"conversation": _conv("short"), "spans": [{"start": 1, "end": 1, "label": "Supported"}]}),
        json.dumps({"conversation": _conv("short"), "spans": [{"start": "0", "end": 2, "label": "Supported"}]}),
        json.dumps({"conversation": _conv("short"), "annotations": [{"span": "sh", "label": "Wrong"}]}),
        json.dumps({"conversation": _conv("short"), "annotations": [{"span": 5, "label": "Supported"}]}),
        json.dumps({"conversation": _conv("short"), "annotations": "sh"}),
        json.dumps(
            {
                "conversation": _conv("short"),
                "spans": [{"start": 0, "end": 3, "label": "Supported"}, {"start": 1, "end": 4, "label": "N/A"}],
            }
        ),
        json.dumps(
            {
                "conversation": _conv("short"),
                "annotations": [{"span": "sho", "label": "Supported"}, {"span": "ho", "label": "Not Supported"}],
            }
        ),
        json.dumps({"conversation": _conv("sh\x00ort")}),
        json.dumps({"conversation": _conv("short"), "id": "\ud800"}),
        json.dumps({"conversation": _conv("short"), "split": ""}),
        json.dumps(
            {
                "conversation": _conv("short"),
                "tokens": {"ids": [1], "offsets": [[0, 9]], "logprobs": [0], "entropies": [0]},
            }
        ),
        json.dumps(
            {
                "conversation": _conv("short"),
                "tokens": {"ids": [1, 2], "offsets": [[0, 5]], "logprobs": [0], "entropies": [0]},
            }
        ),
        json.dumps({"conversation": _conv("short"), "tokens": [1, 2]}),
        json.dumps({"conversation": _conv("short"), "model": 5}),
        json.dumps({"conversation": _conv("short"), "extra": {"deep": "\u0000"}}),
        "[" * 5000 + "]" * 5000,
    ]
)


@st.composite
def _good_line(draw) -> str:
    answer = draw(st.sampled_from(["Lviv is old.", "Café 😀 東京", "Kraków", "a b c d", "Zürich e\u0301"]))
    answer = answer + draw(st.sampled_from(["", "!", " ok", "?"]))
    text = nfc(answer)
    record: dict = {"conversation": _conv(answer, draw(st.sampled_from(["q1", "q2", "q3"])))}
    if draw(st.booleans()):
        start = draw(st.integers(0, len(text) - 1))
        end = draw(st.integers(start + 1, len(text)))
        label = draw(st.sampled_from(LABELS + ["hallucinated", "supported", "ignore"]))
        if draw(st.booleans()):
            record["spans"] = [{"start": start, "end": end, "label": label}]
        else:
            record["annotations"] = [
                {"span": text[start:end], "index": draw(st.sampled_from([start, None, 999])), "label": label}
            ]
    if draw(st.booleans()):
        record["id"] = draw(st.sampled_from(["x", "y", 7]))
    if draw(st.booleans()):
        record["split"] = draw(st.sampled_from(["train", "test"]))
    return json.dumps(record, ensure_ascii=draw(st.booleans()))


@st.composite
def _fuzz_file(draw) -> list[tuple[str, str]]:
    """(kind, line) pairs; about half the files are clean so successful imports get fuzzed too."""
    good = _good_line().map(lambda s: ("good", s))
    blank = st.sampled_from(["", "   "]).map(lambda s: ("blank", s))
    bad = _bad_line.map(lambda s: ("bad", s))
    line = st.one_of(good, good, good, blank) if draw(st.booleans()) else st.one_of(good, good, blank, bad)
    return draw(st.lists(line, min_size=10, max_size=20))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=_fuzz_file())
def test_fuzz_import_all_or_nothing(sqlite_db, tmp_path, lines):
    path = tmp_path / "fuzz.jsonl"
    path.write_text("".join(text + "\n" for _, text in lines), encoding="utf-8")
    with sqlite_db.sessions() as session:
        ds = session.scalar(select(func.count()).select_from(Generation))
        known = set(session.scalars(select(Generation.content_hash)))
    before = _counts(sqlite_db)
    bad = [n for n, (kind, _) in enumerate(lines, start=1) if kind == "bad"]
    try:
        report = _import(sqlite_db, path, dataset="fuzz")
    except BadImportError as error:
        assert [n for n, _ in error.problems] == bad
        assert _counts(sqlite_db) == before
        event("bad lines")
        return
    except UserError:
        assert _counts(sqlite_db) == before
        raise
    assert not bad
    event("imported")
    valid = [json.loads(text) for kind, text in lines if kind == "good"]
    hashes = []
    for record in valid:
        digest = content_hash(record["conversation"])
        if digest not in known and digest not in hashes:
            hashes.append(digest)
    assert report.imported == len(hashes) and report.duplicates == len(valid) - len(hashes)
    with sqlite_db.sessions() as session:
        rows = session.scalars(
            select(Generation).where(Generation.id.in_(report.generation_ids)).order_by(Generation.id)
        ).all()
        assert [r.content_hash for r in rows] == hashes
        assert session.scalar(select(func.count()).select_from(Generation)) == ds + len(hashes)
        sets = session.scalar(
            select(func.count())
            .select_from(AnnotationSet)
            .where(AnnotationSet.generation_id.in_(report.generation_ids))
        )
    first_of = {}
    for record in valid:
        first_of.setdefault(content_hash(record["conversation"]), record)
    expected_sets = sum(1 for h in hashes if "spans" in first_of[h] or "annotations" in first_of[h])
    assert sets == expected_sets
    assert _counts(sqlite_db)["events"] == before["events"] + 1 + expected_sets
