"""A LoRA probe in a real Chromium (issue #15), on the tiny test model so the retrain takes seconds:
an admin retrains with kind LoRA from the Probes page, watches the run's progress move through
the LoRA training steps, promotes the new version, and the Generate page then streams with it:
the answer is scored by the promoted LoRA version, through its adapted model."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.support.apptest import add_users
from tests.support.browser import CHROMIUM, served_app, sign_in

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium"),
]

ADMIN, ADMIN_PW = "admin", "admin-password-1"
HEATMAP = ".plh-root[data-token-count]"
EPOCHS = 30  # 24 training answers, 4 a batch: 180 LoRA steps, long enough to watch a bar polled once a second move


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model_dir):
    """The capitals answers with gold labels and an active linear probe (v1), served with the tiny model."""
    from core.engine.model import load_model
    from tests.support.capitals import run_retrain, seed

    def prepare(database) -> None:
        add_users(database, (ADMIN, ADMIN_PW, "admin"))
        seed(database)
        run_retrain(database, load_model(str(tiny_model_dir)), activate=True)

    with pytest.MonkeyPatch.context() as mp:
        # One torch thread in the server and its workers: on a busy 2-core machine two threads make
        # each of the tiny model's small matrix products wait for the other core (a LoRA step then
        # took about 1 s instead of 0.1 s).
        mp.setenv("OMP_NUM_THREADS", "1")
        with served_app(tmp_path_factory.mktemp("lora"), prepare, model=str(tiny_model_dir)) as (app, database, _):
            yield app, database, tiny_model_dir


def fill(page, label: str, value: object) -> None:
    box = page.get_by_role("spinbutton", name=label)  # the label alone also names its help button
    box.fill(str(value))
    box.press("Tab")  # commits the number; inside the form nothing reruns until Retrain


def watch_run(page, done: re.Pattern, timeout_s: float = 120) -> list[tuple[float, str]]:
    """(value, text) of the run's progress bar, read every 250 ms until `done` shows."""
    bar = page.locator('[data-testid="stProgress"]')
    seen: list[tuple[float, str]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not page.get_by_text(done).count():
        try:
            if bar.count():
                value = float(bar.first.get_by_role("progressbar").get_attribute("aria-valuenow", timeout=1_000) or 0)
                seen.append((value, bar.first.inner_text(timeout=1_000)))
        except Exception:
            pass
        page.wait_for_timeout(250)
    page.get_by_text(done).first.wait_for(timeout=10_000)
    return seen


def hovered_score(page, i: int) -> str:
    """The score the tooltip of token i shows. A rerun that re-attaches the heatmap hides its
    tooltip, and a mouse already resting on the token sends no new mouseover: so leave and
    come back until the tooltip shows (three tries)."""
    token = page.locator(f"{HEATMAP} .plh-text span[data-i='{i}']")
    tip = page.locator(".plh-tip")
    for attempt in range(3):
        page.mouse.move(0, 0)
        token.hover(timeout=5_000)
        try:
            tip.wait_for(state="visible", timeout=5_000)
            break
        except Exception:
            if attempt == 2:
                raise
    return re.search(r"score\s*(\d\.\d{3})", tip.inner_text()).group(1)


def test_admin_retrains_a_lora_probe_promotes_it_and_generate_streams_with_it(page, served):
    import numpy as np

    from core.engine.model import load_model
    from core.engine.scoring import score_conversation
    from core.orchestration.registry import load_version
    from db.generations import get_generation, trace_of
    from db.predictions import scores_for
    from db.probes import active_probe, list_probes

    app, database, model_dir = served
    with database.sessions() as session:
        assert active_probe(session).version == 1 and len(list_probes(session)) == 1

    # --- retrain with kind LoRA from the Probes page, watching its progress ---------------------------
    sign_in(page, app, ADMIN, ADMIN_PW)
    page.get_by_role("link", name="Probes").click()
    page.get_by_label("Epochs (0 = auto)").wait_for(timeout=60_000)
    page.get_by_text("LoRA (adapters on blocks 0..layer trained with the head)").click()
    fill(page, "Epochs (0 = auto)", EPOCHS)
    fill(page, "LoRA rank", 4)
    page.get_by_role("button", name="Retrain").click()
    seen = watch_run(page, re.compile(r"registered v2"))
    assert seen == sorted(seen, key=lambda s: s[0]), seen  # the bar only moves forward
    # the LoRA training steps are reported (train: step/steps · loss … (KL …)) and move the bar
    lora_steps = [(value, text) for value, text in seen if re.search(r"train: \d+/\d+ · loss \S+ \(KL ", text)]
    assert len({value for value, _ in lora_steps}) >= 3, seen
    assert all(text.startswith("Retrain run") for _, text in lora_steps), lora_steps

    with database.sessions() as session:
        newest = list_probes(session)[0]
        assert newest.version == 2 and not newest.active
        assert newest.metrics["kind"] == "lora" and newest.metrics["comparison"]["against"] == 1
        assert (Path(newest.artifact_path) / "adapter" / "adapter_config.json").is_file()
    lm = load_model(str(model_dir))
    lora = load_version(database, lm, 2)
    assert lora.kind == "lora" and lora.config.lora["rank"] == 4 and lora.config.lora["epochs"] == EPOCHS

    # --- promote it --------------------------------------------------------------------------------
    page.get_by_role("button", name="Promote v2 to active").click()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with database.sessions() as session:
            if active_probe(session).version == 2:
                break
        page.wait_for_timeout(250)
    with database.sessions() as session:
        assert active_probe(session).version == 2

    # --- Generate streams with the LoRA version -------------------------------------------------------
    page.get_by_role("link", name="Generate").click()
    page.get_by_text(f"Scoring with probe v2 · layer {lora.layer}").wait_for(timeout=60_000)
    page.get_by_text("Settings").click()
    page.get_by_label("Max new tokens").wait_for(state="visible", timeout=10_000)
    for label, value in (("Max new tokens", 200), ("Temperature (0 = greedy)", 0)):
        box = page.get_by_label(label)
        box.fill(str(value))
        box.press("Enter")
        page.wait_for_timeout(500)
    box = page.get_by_placeholder("Ask the model a question")
    box.fill("What is the capital of France?")
    box.press("Enter")
    counts: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not page.get_by_text(re.compile(r"Open answer #\d+ in Annotate")).count():
        root = page.locator(HEATMAP)
        if root.count() and page.get_by_text(re.compile(r"Generating… \d+ tokens")).count():
            try:
                counts.append(int(root.first.get_attribute("data-token-count", timeout=1_000)))
            except Exception:
                pass
        page.wait_for_timeout(100)
    link = page.get_by_text(re.compile(r"Open answer #\d+ in Annotate"))
    link.wait_for(timeout=30_000)
    assert len(set(counts)) >= 2 and counts == sorted(counts), counts  # tokens arrived while it generated
    generation_id = int(re.search(r"#(\d+)", link.inner_text()).group(1))

    with database.sessions() as session:
        row = get_generation(session, generation_id)
        trace = trace_of(row)
        streamed = scores_for(session, 2, generation_id)  # stored under the version that scored the stream
        assert streamed is not None and scores_for(session, 1, generation_id) is None
    n = len(trace.token_ids)
    assert n > counts[0] and page.locator(f"{HEATMAP} .plh-text span[data-i]").count() == n
    # the streamed scores are the LoRA version's: its head on its adapted model's states, teacher forced
    conversation = row.conversation
    expected = np.asarray(lora.predict(lora.hidden(lm, conversation, trace.token_ids)), dtype=np.float64)
    assert np.abs(np.asarray(streamed) - expected).max() < 1e-4
    # ... and not the LoRA head on the base model's states: the adapters matter
    base_states = score_conversation(lm, conversation, [lora.layer], trace.token_ids).hidden[lora.layer]
    without_adapters = np.asarray(lora.predict(base_states), dtype=np.float64)
    assert np.abs(without_adapters - expected).max() > 1e-3
    # and the heatmap shows those scores (hovering tokens with visible text: a byte token that only
    # starts a character has none)
    visible = [i for i, text in enumerate(trace.texts) if text.strip()]
    assert len(visible) >= 3, trace.texts
    for i in (visible[0], visible[len(visible) // 2], visible[-1]):
        assert hovered_score(page, i) == f"{expected[i]:.3f}"
