"""A promote refused because another admin's promote won (issue #25 bug 7), in a real Chromium.

The other admin's promote (the version made active and its re-score run, written as the
launcher writes them) is made from this test process in one PostgreSQL transaction that stays
open while the admin here presses Promote. Starting the re-score run took the advisory lock
that serialises run starts, so the page's run reads the versions table (PostgreSQL shows it
what was committed: v1 active) and then waits for that lock in its own promote. The test
commits once the browser shows that run's table but not yet what the page draws below the
Promote button: the other promote lands exactly between the page's read and its promote, which
is then refused (a re-score is already running). The page must then show the version the other
admin made active, not the one it read before. (On SQLite every start of the Probes page takes
the write lock before the table, in the run widget's reaping of dead runs, so no such moment
exists there.) The tiny test model keeps the served app light.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tests.support.apptest import add_users
from tests.support.browser import CHROMIUM, served_app, sign_in
from tests.support.data_grid import grid_rows
from tests.support.probe_versions import register_linear_probe

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium"),
]

ADMIN, ADMIN_PW = "admin", "admin-password-1"
OTHER, OTHER_PW = "ada", "ada-password-1"

# whether the versions table's element (its grid has an "active" column) and the download button
# below Promote still show the run before (Streamlit greys them as "stale" until drawn again)
STALE_JS = """(download) => {
    const stale = el => el ? el.dataset.stale : 'missing';
    const table = [...document.querySelectorAll('[data-testid="stElementContainer"]')].find(c =>
        [...c.querySelectorAll('th[role=columnheader]')].some(th => th.textContent.trim() === 'active'));
    return [stale(table), stale(document.querySelector(download))];
}"""


@pytest.fixture()
def probes(tmp_path, pg_db, tiny_model_dir, tiny_lm):
    """Three versions of a probe for the tiny model (v1 active) and two admins, on PostgreSQL."""

    def prepare(database) -> None:
        add_users(database, (ADMIN, ADMIN_PW, "admin"), (OTHER, OTHER_PW, "admin"))
        for seed in range(3):
            register_linear_probe(database, tiny_lm, activate=seed == 0, seed=seed)

    with served_app(tmp_path, prepare, model=str(tiny_model_dir), database_url=pg_db.full_url) as (app, database, _):
        yield app, database


def _versions(page):
    return page.locator('[data-testid="stElementContainer"]').filter(
        has=page.locator("th[role=columnheader]", has_text=re.compile(r"^active$"))
    )


def _active_version(page) -> int | None:
    """The version whose row of the versions table (the grid's accessible copy) is marked active."""
    marked = [row["version"] for row in grid_rows(_versions(page)) if row.get("active") == "●"]
    return int(marked[0]) if len(marked) == 1 else None


def _wait_for_active(page, version: int, timeout_s: float) -> int | None:
    deadline = time.monotonic() + timeout_s
    seen = None
    while time.monotonic() < deadline:
        seen = _active_version(page)
        if seen == version:
            break
        page.wait_for_timeout(250)
    return seen


def test_a_refused_promote_shows_the_version_another_admin_made_active(page, probes):
    from core.orchestration.registry import activate_in
    from core.orchestration.run_params import RescoreParams
    from db.models import RunKind
    from db.probes import active_probe
    from db.train_runs import create_run, mark_started
    from db.users import get_user

    app, database = probes
    theirs, mine = 2, 3
    sign_in(page, app, ADMIN, ADMIN_PW)
    page.get_by_role("link", name="Probes").click()
    promote = page.get_by_role("button", name=f"Promote v{mine} to active")  # the newest is picked first
    promote.wait_for(timeout=60_000)
    assert _wait_for_active(page, 1, 30) == 1

    with database.sessions() as session, session.begin():
        other = get_user(session, OTHER)
        run = create_run(session, RunKind.RESCORE, RescoreParams(theirs).to_dict(), other)  # holds the start lock
        activate_in(session, theirs, other)
        mark_started(session, run.id, os.getpid())  # its worker: this process, alive through the test
        promote.click()
        # the page has drawn this run's versions table (read before this commit) and not yet
        # the download button below Promote: it waits for the start lock in its own promote
        page.wait_for_function(
            f"() => JSON.stringify(({STALE_JS})('.st-key-download-{mine}')) === JSON.stringify(['false', 'true'])",
            timeout=30_000,
        )
    page.get_by_text(re.compile(r"a rescore is already running \(run \d+")).first.wait_for(timeout=30_000)
    with database.sessions() as session:
        assert active_probe(session).version == theirs
    assert _wait_for_active(page, theirs, 15) == theirs  # what is active now, not the v1 read before
