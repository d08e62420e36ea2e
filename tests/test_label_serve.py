"""The label run end to end against our own `python -m core serve` with the embedded model as
the judge (a weak one: its output may be unusable). The run completes, each answer's outcome is
recorded, every stored span matches its answer's text, and a second run answers the usable
outcomes from the cache (a failed one is asked again)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from core.orchestration.label_run import LabelParams, run_label
from core.text.judging import output_token_limit
from db.api_keys import create_key
from db.judges import add_judge
from db.models import Generation, JudgeResult, JudgeStatus
from db.users import add_user
from tests.support.browser import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
ANSWERS = ["Paris is the capital of France.", "Tokyo is the capital of Japan."]


def test_a_label_run_against_serve_with_the_embedded_model(sqlite_db, make_generation, tmp_path, monkeypatch):
    with sqlite_db.sessions() as session, session.begin():
        ids = [make_generation(session, text, dataset="facts").id for text in ANSWERS]
        owner = add_user(session, "svc", "service-password")
        key = create_key(session, owner, "judge", actor=None)[1]
    env = {
        **os.environ,
        "DATABASE_URL": sqlite_db.full_url,
        "PROBELENS_CACHE_DIR": str(tmp_path / "cache"),
        "PROBELENS_DEVICE": "cpu",
        "PROBELENS_SERVE_MAX_TOKENS": str(output_token_limit()),  # what every judge request asks for
        "OMP_NUM_THREADS": "1",
    }
    env.pop("PROBELENS_MODEL", None)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "serve", "--port", str(port), "--probe", "none"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else "serve exited"
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, "serve did not start"
            time.sleep(0.3)
        model = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).json()["data"][0]["id"]
        monkeypatch.setenv("SERVE_JUDGE_KEY", key)
        with sqlite_db.sessions() as session, session.begin():
            add_judge(session, "smol", base_url=url + "/v1", model=model, api_key_env="SERVE_JUDGE_KEY", timeout_s=300)
        first = run_label(sqlite_db, LabelParams("facts", "smol"))
        assert first.answers == 2 and first.labelled + first.failed == 2, first.message()
        assert first.input_tokens > 0 and first.output_tokens > 0
        with sqlite_db.reading() as session:
            results = {
                r.generation_id: (r.status, r.reason, list(r.spans)) for r in session.scalars(select(JudgeResult))
            }
            texts = {g.id: g.completion for g in session.scalars(select(Generation))}
        assert set(results) == set(ids)
        for generation_id, (status, reason, spans) in results.items():
            assert status in (JudgeStatus.OK, JudgeStatus.FAILED)
            assert (status == JudgeStatus.FAILED) == bool(reason)
            for span in spans:  # whatever it said, what is stored lies on the answer's text
                assert 0 <= span["start"] < span["end"] <= len(texts[generation_id])
        second = run_label(sqlite_db, LabelParams("facts", "smol"))  # usable outcomes are free
        assert (second.cached, second.retried) == (first.labelled, first.failed)
        assert (second.input_tokens == 0) == (first.failed == 0)
    finally:
        proc.terminate()
        proc.wait(30)
