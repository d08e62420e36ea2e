"""A team's day in a real Chromium (issue #14): the bugs a first-time team met, each pinned.

- Review → Agreement: "Open answer #N" switches to Settle gold with that answer.
- Why an answer ended is always shown (above its heatmap, where the pinned chat input cannot
  hide it), and stays with the saved answer (Annotate shows it).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.apptest import add_users
from tests.support.browser import CHROMIUM, served_app, sign_in

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium"),
]

ADMIN, ADMIN_PW = "admin", "admin-password-1"
REV, REV_PW = "rev", "reviewer-password"
HEATMAP = ".plh-root[data-token-count]"


def _hot_probe(database, lm) -> int:
    """An inactive probe that scores every token 0.99995: early stop fires on the first token."""
    import torch

    from core.orchestration.registry import register_version
    from core.probes.config import ProbeConfig
    from core.probes.files import save_probe
    from core.probes.linear import LinearProbe

    probe = LinearProbe(lm.hidden_size)
    with torch.no_grad():
        probe.linear.weight.zero_()
        probe.linear.bias.fill_(10.0)

    def write(staging: Path, version: int) -> ProbeConfig:
        config = ProbeConfig(
            model_id=lm.model_id,
            tokenizer_hash=lm.tokenizer_hash,
            layer=lm.default_layer,
            hidden_size=lm.hidden_size,
            version=version,
        )
        save_probe(staging, probe, config)
        return config

    return register_version(database, write, tag="hot").probe_version


@pytest.fixture(scope="module")
def team(tmp_path_factory, demo_seeded):
    """A demo (answers + active probe), a hot probe, and two annotators who disagree on two answers."""
    from sqlalchemy import select

    from core.base.types import Span
    from core.engine.model import get_model
    from db.annotations import save_annotation_set
    from db.generations import get_generation, trace_of
    from db.models import Dataset, Generation
    from db.users import add_user

    facts: dict = {}

    def prepare(database) -> None:
        lm = get_model(None)
        add_users(database, (ADMIN, ADMIN_PW, "admin"), (REV, REV_PW, "reviewer"))
        facts["hot"] = _hot_probe(database, lm)
        with database.sessions() as session, session.begin():
            rows = session.scalars(
                select(Generation).join(Dataset).where(Dataset.name == "demo").order_by(Generation.id)
            ).all()
            bea = add_user(session, "bea", "bea-password-1", role="annotator")
            cal = add_user(session, "cal", "cal-password-1", role="annotator")
            facts["disputed"] = []
            for row in (rows[2], rows[6]):
                offsets = trace_of(get_generation(session, row.id)).offsets
                first = offsets[1]
                save_annotation_set(
                    session, row.id, [Span(*first, "Not Supported")], owner=bea, expected_version=0, actor=bea
                )
                save_annotation_set(
                    session, row.id, [Span(*first, "Supported")], owner=cal, expected_version=0, actor=cal
                )
                facts["disputed"].append(row.id)

    with served_app(tmp_path_factory.mktemp("team"), prepare, start_from=demo_seeded) as (app, database, _url):
        yield app, database, facts


def _picked_answer(page) -> str:
    picker = page.locator('[data-testid="stSelectbox"]').filter(has_text="Answer")
    picker.wait_for(timeout=30_000)
    return picker.evaluate(
        "el => el.textContent + ' ' + [...el.querySelectorAll('input')]"
        ".map(i => i.value + ' ' + (i.getAttribute('aria-label') || '')).join(' ')"
    )


def test_agreement_open_answer_shows_that_answer_on_settle_gold(page, team):
    app, _database, facts = team
    sign_in(page, app, REV, REV_PW)
    page.get_by_role("link", name="Review").click()
    _picked_answer(page)
    for generation_id in reversed(facts["disputed"]):  # one of the two is not the default pick
        page.get_by_role("tab", name="Agreement").click()
        table = page.locator('[data-testid="stDataFrame"]').filter(visible=True).first
        table.wait_for(timeout=30_000)
        box = table.bounding_box()
        page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # the bea-cal pair's selection marker
        page.get_by_role("button", name=f"Open answer #{generation_id}").click()
        page.get_by_role("tab", name="Settle gold", selected=True).wait_for(timeout=30_000)
        page.wait_for_function(
            "id => [...document.querySelectorAll('[data-testid=stSelectbox]')].some(el => "
            "el.textContent.includes('Answer') && (el.textContent + [...el.querySelectorAll('input')]"
            ".map(i => i.value).join(' ')).includes('#' + id))",
            arg=str(generation_id),
            timeout=30_000,
        )
        assert f"#{generation_id}" in _picked_answer(page)


def _choose(page, label: str, option: str) -> None:
    """Pick an option of a Streamlit selectbox: open it, type to filter, take the match."""
    box = page.get_by_role("combobox", name=label, exact=True)
    for _attempt in range(3):
        box.click()
        page.keyboard.type(option)
        choice = page.get_by_role("option", name=option, exact=True)
        try:
            choice.click(timeout=5_000)
            break
        except Exception:
            page.keyboard.press("Escape")
    page.wait_for_timeout(500)


def test_an_early_stop_says_why_above_the_heatmap_and_the_saved_answer_keeps_it(page, team):
    app, database, facts = team
    sign_in(page, app, ADMIN, ADMIN_PW)
    page.get_by_text("Settings").click()
    page.get_by_role("combobox", name="Probe", exact=True).wait_for(timeout=15_000)
    _choose(page, "Probe", f"v{facts['hot']}")
    _choose(page, "Early stop", "When a token's risk is too high")
    box = page.get_by_placeholder("Ask the model a question")
    box.fill("What is the capital of Australia?")
    box.press("Enter")
    why = page.get_by_text(re.compile(r"Early stop: stopped at token 1 "))
    why.wait_for(timeout=60_000)
    heatmap = page.locator(HEATMAP)
    heatmap.wait_for(timeout=30_000)
    assert why.bounding_box()["y"] < heatmap.bounding_box()["y"]  # above the answer, never under the input
    link = page.get_by_role("link", name=re.compile(r"Open answer #\d+ in Annotate"))
    link.wait_for(timeout=30_000)
    generation_id = int(re.search(r"#(\d+)", link.inner_text()).group(1))

    from db.generations import get_generation

    with database.sessions() as session:
        extra = get_generation(session, generation_id).extra
    assert extra["finish_reason"] == "early_stop" and extra["stop_note"].startswith("stopped at token 1 ")
    link.click()
    page.get_by_text(re.compile(r"When it was generated: Early stop: stopped at token 1 ")).wait_for(timeout=30_000)
