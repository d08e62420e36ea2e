"""Issue #12, finding 9: spreadsheet formula injection in CSV downloads.

The app writes no CSV file of its own; the CSVs it hands out come from Streamlit's table
toolbar, which writes the shown cells verbatim and cannot be turned off per table (only for
the whole app, `client.disableDataExport`). So every table of user or model text is shown
through `core.text.spreadsheet.spreadsheet_safe`, and a guard here keeps it so.
"""

from __future__ import annotations

import ast
import csv
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from core.text.spreadsheet import FORMULA_START, neutralise_cell, spreadsheet_safe
from tests.support.apptest import add_users, sign_in

REPO = Path(__file__).resolve().parents[2]
HOSTILE = '=HYPERLINK("http://127.0.0.1:9/x")'

# Tables that show only our own words and numbers (metrics, versions, label names): no toolbar risk.
NUMERIC_TABLES = {
    ("pages/probes.py", "probe-versions"),
    ("pages/probes.py", "probe-comparison"),
    ("pages/inspect.py", "insp-compare-table"),
    ("pages/review.py", "rev-labels"),
}


def toolbar_csv(frame: pd.DataFrame) -> list[list[str]]:
    """What Streamlit's download button writes: the shown cells, quoted only around , " and newlines."""
    text = frame.to_csv(index=False)
    return list(csv.reader(io.StringIO(text)))


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def formula_cells(rows: list[list[str]]) -> list[str]:
    """Cells a spreadsheet would run (a number such as -0.5 is read as a number)."""
    return [cell for row in rows for cell in row if cell.startswith(FORMULA_START) and not _number(cell)]


def table_with(at, column: str) -> pd.DataFrame:
    """The shown table that has `column` (tables without on_select carry no key in AppTest)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


# --- the helper ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [HOSTILE, "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "=", "-"])
def test_a_cell_that_starts_a_formula_is_prefixed(value):
    assert neutralise_cell(value) == "'" + value


@pytest.mark.parametrize(
    "value", ["Lviv", " =1", "a=b", "'=already", "", "1-2", "東京", None, -3, 2.5, True, ["=x"], {"a": "=x"}]
)
def test_other_cells_are_left_as_they_are(value):
    assert neutralise_cell(value) is value or neutralise_cell(value) == value


def test_a_table_keeps_numbers_and_row_order_and_neutralises_text():
    frame = pd.DataFrame(
        {"#": [1, 2, 3], "answer": [HOSTILE, "plain", None], "risk": [-0.5, 0.2, None], "@name": ["-x", "+y", "z"]}
    )
    safe = spreadsheet_safe(frame)
    assert list(safe["answer"][:2]) == ["'" + HOSTILE, "plain"] and pd.isna(safe["answer"][2])
    assert list(safe["'@name"]) == ["'-x", "'+y", "z"]
    assert safe["#"].dtype == frame["#"].dtype and safe["risk"].dtype == frame["risk"].dtype
    assert list(safe["risk"][:2]) == [-0.5, 0.2]
    assert list(frame["answer"][:1]) == [HOSTILE]  # the caller's frame is not changed
    assert not formula_cells(toolbar_csv(safe)[1:]) and "'" + HOSTILE in toolbar_csv(safe)[1]
    string_frame = pd.DataFrame({"t": pd.array(["=1", "ok", None], dtype="string")})
    assert list(spreadsheet_safe(string_frame)["t"][:2]) == ["'=1", "ok"]
    transposed = spreadsheet_safe(pd.DataFrame({"a": [1]}, index=["=label"]))
    assert list(transposed.index) == ["'=label"]


# --- guards: every CSV writer of the app -----------------------------------------------------------


def _app_files() -> list[Path]:
    return [
        REPO / "app.py",
        *sorted((REPO / "pages").glob("*.py")),
        *sorted((REPO / "core").rglob("*.py")),
        *sorted((REPO / "db").rglob("*.py")),
    ]


def test_the_app_writes_no_csv_of_its_own():
    """A new CSV writer must neutralise each cell with core.text.spreadsheet.neutralise_cell."""
    writers = ("to_csv(", "csv.writer(", "csv.DictWriter(", "text/csv")
    found = [
        f"{path.relative_to(REPO)}: {w}"
        for path in _app_files()
        for w in writers
        if w in path.read_text(encoding="utf-8")
    ]
    assert not found, f"CSV written without the neutraliser? {found}"


def _dataframe_calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("dataframe", "data_editor")
        ):
            key = next((k.value for k in node.keywords if k.arg == "key"), None)
            yield node, (key.value if isinstance(key, ast.Constant) else ast.unparse(key) if key else None)


def test_every_table_the_pages_show_goes_through_the_neutraliser():
    """Streamlit's toolbar offers each st.dataframe as a CSV download: text tables are shown safe."""
    unsafe = []
    calls = 0
    for path in [REPO / "app.py", *sorted((REPO / "pages").glob("*.py"))]:
        for node, key in _dataframe_calls(path):
            calls += 1
            data = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "data"), None)
            wrapped = (
                isinstance(data, ast.Call) and isinstance(data.func, ast.Name) and data.func.id == "spreadsheet_safe"
            )
            if not wrapped and (str(path.relative_to(REPO)), key) not in NUMERIC_TABLES:
                unsafe.append(f"{path.relative_to(REPO)}:{node.lineno} (key {key})")
    assert calls >= 15 and not unsafe, f"tables shown without spreadsheet_safe: {unsafe}"


# --- the pages: a hostile answer, name and dataset name ----------------------------------------------


def _records(answer: str = HOSTILE) -> bytes:
    rows = [
        {
            "id": f"h{i}",
            "conversation": [{"role": "user", "content": f"@cmd prompt {i}"}, {"role": "assistant", "content": answer}],
        }
        for i in range(2)
    ]
    return "\n".join(json.dumps(r) for r in rows).encode() + b"\n"


@pytest.fixture()
def hostile_app(app_database):
    from core.orchestration.imports import import_file

    add_users(app_database, ("boss", "boss-password", "admin"), ("-evil", "evil-password", "annotator"))
    with app_database.sessions() as session, session.begin():
        import_file(session, _records(), dataset="+hostile", actor=None, source_name="hostile.jsonl")
    return app_database


def test_a_hostile_answer_is_neutralised_in_the_annotate_queue_csv(hostile_app):
    at = sign_in("boss", "boss-password", "pages/annotate.py")
    assert not at.exception, at.exception
    table = at.dataframe(key="ann-table").value
    assert list(table["answer"]) == ["'" + HOSTILE] * 2
    rows = toolbar_csv(table)
    assert not formula_cells(rows[1:]) and all(row[1] == "'" + HOSTILE for row in rows[1:])


def test_the_data_page_tables_are_neutralised(hostile_app):
    at = sign_in("boss", "boss-password", "pages/data.py")
    assert not at.exception, at.exception
    assert list(table_with(at, "dataset")["dataset"]) == ["'+hostile"]
    upload = pd.DataFrame({"prompt": ["@SUM(1+1)"], "answer": [HOSTILE]}).to_csv(index=False).encode()
    at.file_uploader(key="imp-file").set_value(("hostile.csv", upload, "text/csv")).run()
    assert not at.exception, at.exception
    preview = table_with(at, "completion")
    assert preview["completion"][0] == "'" + HOSTILE and preview["prompt"][0] == "'@SUM(1+1)"
    assert not formula_cells(toolbar_csv(preview)[1:])


def test_the_users_page_neutralises_names(hostile_app):
    at = sign_in("boss", "boss-password", "pages/users.py")
    assert not at.exception, at.exception
    names = list(table_with(at, "role")["name"])
    assert "'-evil" in names and "boss" in names
