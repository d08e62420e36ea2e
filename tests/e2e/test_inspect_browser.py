"""The Inspect page in a real Chromium, on a small demo seeded with the embedded model: a
reviewer moves the threshold slider and reads the numbers the core computes for that
threshold, then clicks an error and lands on the heatmap of that very answer, on its span.

The expected numbers are computed in this process with the same database, model, probe and
activation cache as the served app, so every figure on the page is checked, not just "changed".
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import CHROMIUM, ROOT, StreamlitApp

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium"),
]

REVIEWER, REVIEWER_PW = "rita", "reviewer-password"
DEMO_SIZE = 30


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A fresh database with a reviewer and a small demo (answers + an active probe), served,
    plus the model in this process (same caches as the app) to compute what the page must show."""
    from core.model import get_model
    from core.seed import seed_demo
    from db import open_database
    from db.users import add_user

    tmp = tmp_path_factory.mktemp("inspect")
    url = f"sqlite:///{tmp / 'probelens.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", url)
        mp.setenv("PROBELENS_PROBES_DIR", str(tmp / "probes"))
        mp.setenv("PROBELENS_CACHE_DIR", str(tmp / "cache"))
        mp.setenv("PROBELENS_MODEL_CACHE_DIR", str(ROOT / "data" / "cache" / "models"))
        mp.setenv("PROBELENS_SEED_DEMO", "0")
        database = open_database(url)
        with database.sessions() as session, session.begin():
            add_user(session, "admin", "admin-password-1", role="admin")  # else the app asks for one first
            add_user(session, REVIEWER, REVIEWER_PW, role="reviewer")
        lm = get_model(None)
        seed_demo(database, lm, size=DEMO_SIZE)
        app = StreamlitApp(ROOT / "app.py")
        try:
            app.wait_ready(timeout=90)
            yield app, database, lm
        finally:
            app.stop()
            database.dispose()


def expected(database, lm):
    """What the page computes by default: the active probe on the validation answers, span_max."""
    from core.inspect_data import evaluation_set
    from core.inspection import threshold_table
    from db.probes import active_probe

    with database.sessions() as session:
        version = active_probe(session).version
    es = evaluation_set(database, lm, version, None, ["validation"])
    return es, threshold_table(es.items, "span_max")


def sign_in(page, app, name: str, password: str) -> None:
    page.goto(app.url())
    page.get_by_label("User name").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"{name} ·").wait_for(timeout=60_000)


def metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return box.locator('[data-testid="stMetricValue"]').inner_text()


def shown(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def wait_for_metrics(page, want: dict[str, str], timeout_ms: int = 20_000) -> dict[str, str]:
    """Poll until the metrics read `want` (a rerun takes a moment); return what they read."""
    got: dict[str, str] = {}
    for _ in range(timeout_ms // 250):
        got = {name: metric(page, name) for name in want}
        if got == want:
            break
        page.wait_for_timeout(250)
    return got


def click_first_row(page, table) -> None:
    box = table.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # the first row's selection marker


def test_reviewer_moves_the_threshold_and_an_error_opens_its_heatmap_on_its_span(page, served):
    from core.inspect_data import first_token_of
    from core.inspection import top_errors

    app, database, lm = served
    es, table = expected(database, lm)
    assert 0 < table["n_pos"] < table["n"], "the demo validation answers need both classes"

    sign_in(page, app, REVIEWER, REVIEWER_PW)
    page.get_by_role("link", name="Inspect").click()
    page.get_by_text(re.compile(rf"on {len(es.row_ids)} labelled answers")).wait_for(timeout=180_000)
    page.get_by_role("tab", name="Threshold").click()
    slider = page.locator('[data-testid="stSlider"]').filter(has_text="Threshold").get_by_role("slider")
    slider.wait_for(timeout=30_000)

    readings = []
    for press, t in ((None, 50), ("End", 100), ("Home", 0)):
        if press:
            slider.focus()
            slider.press(press)
        want = {"Precision": shown(table["precision"][t]), "Recall": shown(table["recall"][t]),
                "F1": shown(table["f1"][t]), "Flagged": str(table["tp"][t] + table["fp"][t])}
        got = wait_for_metrics(page, want)
        assert got == want, (t / 100, got, want)
        readings.append(got)
    assert len({tuple(r.values()) for r in readings}) == 3  # each position read different numbers
    assert readings[2]["Recall"] == "1.000"  # threshold 0 flags everything
    free = page.get_by_text(re.compile("Threshold-free")).first.inner_text()
    assert f"recall at 1% FPR {shown(table['recall_at_fpr_0.01'])}" in free
    assert f"recall at 10% FPR {shown(table['recall_at_fpr_0.1'])}" in free

    # At threshold 0 every supported span is a false positive; the first row is the highest score.
    errors = top_errors(es.items, es.keys, es.texts, es.spans_char, threshold=0.0, k=25)
    top = errors["false_positives"][0]
    g = es.keys.index(top["key"])
    page.get_by_role("tab", name="Errors").click()
    page.get_by_text(f"At threshold 0.00: {errors['n_false_positives']} false positives").wait_for(timeout=30_000)
    click_first_row(page, page.locator('[data-testid="stDataFrame"]').filter(visible=True).first)

    heatmap = page.locator(f'.plh-root[data-doc-id="inspect-{es.row_ids[g]}"]')
    heatmap.wait_for(timeout=30_000)  # the heatmap of that very answer
    assert int(heatmap.get_attribute("data-token-count")) == len(es.traces[g].token_ids)
    focus = first_token_of(es, g, top["start"])
    for _ in range(40):
        if heatmap.get_attribute("data-focus-token") is not None:
            break
        page.wait_for_timeout(250)
    assert heatmap.get_attribute("data-focus-token") == str(focus)  # scrolled to the span's first token
    token = heatmap.locator(f'.plh-text span[data-i="{focus}"]')
    classes = token.get_attribute("class").split()
    assert "g-s" in classes and "o-fp" in classes, classes  # inside the gold-supported span, flagged
    assert token.inner_text().strip() and token.inner_text().strip() in top["span_text"]
    page.get_by_text(f"Answer #{es.row_ids[g]}").first.wait_for(timeout=10_000)
    page.get_by_role("link", name=f"Review #{es.row_ids[g]}").wait_for(timeout=10_000)
    assert not page.errors, page.errors
