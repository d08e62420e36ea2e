"""No column cut off (issue #25 friction 9), measured in a real Chromium on the seeded demo.

Streamlit's data grid draws on a canvas, so its cells cannot be read as laid-out text. Each
table's column widths and shown texts are taken from the grid itself (`tests.support.data_grid`)
and every header and cell text is measured with a canvas in the grid's own fonts: each must fit
its column. Tables: the Probes page's versions table, and Inspect's two error tables, filled by
setting the threshold to 0 (every supported span is flagged) and to 1 (every hallucinated span
is missed) over the train and validation answers.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.support.apptest import add_users
from tests.support.browser import CHROMIUM, served_app, sign_in
from tests.support.data_grid import GRID, cut_off

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium"),
]

ADMIN, ADMIN_PW = "admin", "admin-password-1"


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_seeded):
    def prepare(database) -> None:
        add_users(database, (ADMIN, ADMIN_PW, "admin"))

    with served_app(tmp_path_factory.mktemp("tables"), prepare, start_from=demo_seeded) as (app, _database, _url):
        yield app


def _fits(container, name: str) -> dict:
    """The grid in `container` measured; asserts it has rows, a width for every column, and
    no header or cell text wider than its column. Returns the measurement."""
    measured = cut_off(container)
    assert "error" not in measured, measured
    assert measured["rows"] >= 1, f"{name}: no rows to measure"
    assert all(isinstance(width, (int, float)) for _title, width, _needed in measured["columns"]), measured
    assert not measured["found"], f"{name}: cut off {measured['found']} (columns {measured['columns']})"
    return measured


def _element_with(page, text: str):
    """The element holding the grid drawn under the bold caption `text`."""
    return page.locator(
        f'xpath=//*[@data-testid="stMarkdownContainer"][normalize-space()="{text}"]'
        '/ancestor::*[@data-testid="stElementContainer"][1]'
        '/following-sibling::*[@data-testid="stElementContainer"][1]'
    )


def _set_threshold(page, key: str) -> None:
    page.get_by_role("tab", name="Threshold").click()
    slider = page.locator(".st-key-insp-threshold input[type=range]")  # react-aria's hidden range input
    slider.wait_for(state="attached", timeout=120_000)
    slider.focus()
    slider.press(key)
    page.get_by_role("tab", name="Errors").click()


def test_no_header_or_cell_of_the_probes_and_inspect_tables_is_cut_off(page, demo):
    sign_in(page, demo, ADMIN, ADMIN_PW)
    page.get_by_role("link", name="Probes").click()
    versions = page.locator('[data-testid="stElementContainer"]').filter(
        has=page.locator("th[role=columnheader]", has_text=re.compile(r"^active$"))
    )
    measured = _fits(versions, "Probes versions")
    assert len(measured["columns"]) >= 10  # the whole table, not only the columns in view

    page.get_by_role("link", name="Inspect").click()
    splits = page.locator(".st-key-insp-splits")
    splits.locator("input").click()
    page.get_by_role("option", name="train", exact=True).click()
    page.keyboard.press("Escape")
    for key, caption, level in (
        ("Home", "Flagged but supported", "false positives"),
        ("End", "Missed hallucinations", "false negatives"),
    ):
        _set_threshold(page, key)
        threshold = "0.00" if key == "Home" else "1.00"
        summary = page.get_by_text(re.compile(rf"At threshold {threshold}: \d+ false positives and \d+ false"))
        summary.wait_for(timeout=120_000)
        count = min(int(re.search(rf"(\d+) {level}", summary.inner_text()).group(1)), 25)  # the list's top 25
        assert count >= 1, summary.inner_text()
        table = _element_with(page, caption)
        table.locator(GRID).wait_for(timeout=30_000)
        deadline = time.monotonic() + 30
        while cut_off(table)["rows"] != count and time.monotonic() < deadline:  # this threshold's rows drawn
            page.wait_for_timeout(250)
        measured = _fits(table, f"Inspect {caption} at threshold {threshold}")
        assert measured["rows"] == count, (count, measured)
