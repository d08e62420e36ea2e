"""Reading Streamlit's data grid (glide-data-grid, drawn on a canvas) in Chromium tests.

`grid_rows`: the rows of a grid as the browser holds them, from its accessible copy of the
cells (the visible columns and rows).
"""

from __future__ import annotations

GRID = '[data-testid="stDataFrame"]'

ROWS_JS = """(grid) => {
    const heads = [...grid.querySelectorAll('th[role=columnheader]')];
    const names = new Map(heads.map(h => [h.getAttribute('aria-colindex'), h.textContent.trim()]));
    return [...grid.querySelectorAll('tbody tr[role=row]')].map(tr => Object.fromEntries(
        [...tr.querySelectorAll('td[role=gridcell]')].map(td =>
            [names.get(td.getAttribute('aria-colindex')), td.textContent.trim()])));
}"""


def grid_rows(container) -> list[dict[str, str]]:
    """The rows (column name -> shown text) of the one grid inside the Playwright `container`."""
    grid = container.locator(GRID).first
    grid.locator("td[role=gridcell]").first.wait_for(state="attached", timeout=30_000)
    return grid.evaluate(ROWS_JS)
