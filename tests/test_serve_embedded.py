"""Integration: `python -m core serve` with the embedded SmolLM2 and a probe retrained on it, driven by
the official `openai` client: streamed and whole answers agree, and the streamed risks equal
teacher-forced scoring of the captured tokens (1e-4)."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest

from tests.support.serving import start_serve, stop_serve

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


def test_the_embedded_model_served_with_a_real_probe(tmp_path, monkeypatch):
    from sqlalchemy import select

    from core.engine.model import get_model
    from core.engine.scoring import score_conversation
    from core.orchestration.registry import load_version, promote
    from db import open_database
    from db.api_keys import create_key
    from db.generations import trace_of
    from db.models import Dataset, Generation
    from db.users import add_user
    from tests.support.capitals import run_retrain, seed

    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
        "PROBELENS_PROBES_DIR": str(tmp_path / "probes"),
        "PROBELENS_CACHE_DIR": str(tmp_path / "cache"),
        "PROBELENS_MODEL_CACHE_DIR": str(REPO / "data" / "cache" / "models"),
        "PROBELENS_DEVICE": "cpu",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PROBELENS_MODEL", raising=False)
    database = open_database(env["DATABASE_URL"])
    lm = get_model(None)
    seed(database)
    run_retrain(database, lm)
    promote(database, 1, None)
    with database.sessions() as session, session.begin():
        key = create_key(
            session,
            add_user(session, "ann", "annotator-password"),
            "k",
            actor=None,
            capture="all",
            capture_dataset="served",
        )[1]
    url, proc = start_serve(env, tmp_path / "serve.log", timeout=300)
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=120)
        messages = [{"role": "user", "content": "What is the capital of Peru? Answer in one sentence."}]
        args = {"model": lm.model_id, "messages": messages, "max_tokens": 24, "temperature": 0}
        whole = client.chat.completions.create(**args, logprobs=True)
        chunks = list(client.chat.completions.create(**args, stream=True, logprobs=True))
        streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
        text = "".join(t.token for t in streamed)
        assert text == whole.choices[0].message.content and len(streamed) > 3
        risks = [t.model_extra["risk"] for t in streamed]
        assert risks == pytest.approx([t.model_extra["risk"] for t in whole.choices[0].logprobs.content], abs=1e-4)
        assert chunks[-1].model_extra["probelens"]["probe_version"] == 1
        deadline = time.time() + 30
        rows: list = []
        while not rows and time.time() < deadline:
            time.sleep(0.2)
            with database.sessions() as session:
                rows = list(
                    session.scalars(
                        select(Generation)
                        .join(Dataset, Dataset.id == Generation.dataset_id)
                        .where(Dataset.name == "served")
                    )
                )
        assert rows and rows[0].completion == text  # the same answer twice is stored once
        trace = trace_of(rows[0])
        probe = load_version(database, lm, 1)
        forced = score_conversation(lm, rows[0].conversation, [probe.layer], trace.token_ids)
        assert [float(x) for x in probe.predict(forced.hidden[probe.layer])] == pytest.approx(risks, abs=1e-4)
    finally:
        stop_serve(proc)
        database.dispose()
