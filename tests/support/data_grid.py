"""Reading Streamlit's data grid (glide-data-grid, drawn on a canvas) in Chromium tests.

`grid_rows`: the rows of a grid as the browser holds them, from its accessible copy of the
cells (the visible columns and rows). `cut_off`: the headers and cells a grid draws narrower
than their text, measured in the page: each column's width and each shown text are those the
grid itself renders (its React props: columns, theme, `getCellContent`), and the text is
measured with a canvas in the grid's own fonts.
"""

from __future__ import annotations

from typing import Any

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


CUT_OFF_JS = """async (grid) => {
    await document.fonts.ready;
    const canvas = grid.querySelector('canvas[data-testid="data-grid-canvas"]');
    const fiberKey = Object.keys(canvas).find(k => k.startsWith('__reactFiber$'));
    let fiber = canvas[fiberKey], editor = null;
    while (fiber) {
        const p = fiber.memoizedProps;
        if (p && Array.isArray(p.columns) && typeof p.getCellContent === 'function' && p.theme) { editor = p; }
        fiber = fiber.return;
    }
    if (!editor) return {error: 'no grid props found'};
    const theme = editor.theme;
    const ctx = document.createElement('canvas').getContext('2d');
    const width = (font, text) => { ctx.font = font; return ctx.measureText(text).width; };
    const cellFont = theme.baseFontFull ?? `${theme.baseFontStyle} ${theme.fontFamily}`;
    const headerFont = theme.headerFontFull ?? `${theme.headerFontStyle} ${theme.fontFamily}`;
    const pad = theme.cellHorizontalPadding;
    const rows = editor.rows;
    const columns = [], found = [];
    editor.columns.forEach((column, col) => {
        const title = column.title ?? '';
        const texts = [[title, true]];
        for (let row = 0; row < rows; row++) {
            const cell = editor.getCellContent([col, row]);
            texts.push([String(cell.displayData ?? cell.data ?? ''), false]);
        }
        let widest = 0;
        for (const [text, header] of texts) {
            const icon = header && column.icon ? theme.headerIconSize + pad : 0;
            const needed = Math.ceil(width(header ? headerFont : cellFont, text) + icon + 2 * pad);
            widest = Math.max(widest, needed);
            if (needed > column.width) found.push({column: title, text, header, width: column.width, needed});
        }
        columns.push([title, column.width, widest]);
    });
    return {columns, rows, fonts: [cellFont, headerFont, pad, document.fonts.check(cellFont)], found};
}"""


def cut_off(container) -> dict[str, Any]:
    """What the grid inside `container` draws: {"columns": [[title, width px, px its widest text
    needs]], "rows", "fonts", "found": [each header or cell text wider than its column]}."""
    grid = container.locator(GRID).first
    grid.locator('canvas[data-testid="data-grid-canvas"]').wait_for(timeout=30_000)
    return grid.evaluate(CUT_OFF_JS)
