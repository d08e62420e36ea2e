"""Spreadsheet formula injection: the one neutraliser for text that may end up in a CSV.

A spreadsheet program opening a CSV runs a cell that starts with `=`, `+`, `-` or `@` (and
some also after a leading tab or carriage return) as a formula: `=HYPERLINK(...)` or a DDE
call in an answer, a span or a name would run on the computer of whoever opens the download.
Following OWASP's advice, such a cell is prefixed with a single quote, which spreadsheets
show as text; every other cell is left exactly as it is.

The app writes no CSV file of its own. The CSVs it hands out come from Streamlit's table
toolbar (st.dataframe's download button), which writes the shown cells verbatim and has no
per-table switch, so pages pass every table of user or model text through `spreadsheet_safe`
before showing it (tests/security/test_csv_injection.py keeps it so). Any CSV writer added
later must write `neutralise_cell(value)` for each cell.
"""

from __future__ import annotations

from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: Any) -> Any:
    """A text cell a spreadsheet would read as a formula, prefixed with `'`; anything else as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def spreadsheet_safe(frame: Any) -> Any:
    """A copy of a pandas DataFrame whose text cells, column names and index labels are neutralised.

    Only text (object or string) columns are touched, so numbers, dates and their dtypes stay
    as they were (a number such as -0.5 is no formula); row order is kept (selections still
    match the rows the page holds).
    """
    import pandas as pd

    def text(dtype: Any) -> bool:
        return pd.api.types.is_object_dtype(dtype) or isinstance(dtype, pd.StringDtype)

    out = frame.copy()
    for position in range(out.shape[1]):
        column = out.iloc[:, position]
        if text(column.dtype):
            out.isetitem(position, column.map(neutralise_cell))
    if any(neutralise_cell(label) is not label for label in out.columns):
        out.columns = [neutralise_cell(label) for label in out.columns]
    if text(out.index.dtype):
        out.index = out.index.map(neutralise_cell)
    return out
