"""`serve --ray` on a real Ray started in this process (two CPU replicas of the tiny model with a real
probe in a real SQLite file): the official `openai` client gets answers through Ray Serve's
HTTP proxy, and after one replica's actor is killed new requests are still answered."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.support.browser import free_port

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")]


@pytest.fixture(scope="module")
def ray_service(tiny_lm, tiny_model_dir, tmp_path_factory):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.serve")
    from ray import serve

    from core.orchestration import ray_cluster
    from core.orchestration.registry import promote
    from core.orchestration.serve.app import Limits
    from core.orchestration.serve.ray_serve import deploy
    from db import open_database
    from db.api_keys import create_key
    from db.users import add_user
    from tests.support.capitals import run_retrain, seed

    root = tmp_path_factory.mktemp("serve-ray")
    env = {
        "DATABASE_URL": f"sqlite:///{root / 'serve.db'}",
        "PROBELENS_PROBES_DIR": str(root / "probes"),
        "PROBELENS_CACHE_DIR": str(root / "cache"),
        "PROBELENS_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)  # the replicas inherit this environment from the Ray started here
        mp.delenv("PROBELENS_RAY_ADDRESS", raising=False)
        database = open_database(env["DATABASE_URL"])
        seed(database)
        run_retrain(database, tiny_lm)
        promote(database, 1, None)
        with database.sessions() as session, session.begin():
            ann = add_user(session, "ann", "annotator-password", "annotator")
            key = create_key(session, ann, "ray", actor=None)[1]
        ray.init(num_cpus=2, runtime_env=ray_cluster.runtime_env(), include_dashboard=False)
        try:
            port = free_port()
            plan = deploy(
                env["DATABASE_URL"],
                str(tiny_model_dir),
                "active",
                host="127.0.0.1",
                port=port,
                cpu_replicas=2,
                limits=Limits(max_tokens=32, max_prompt_tokens=400, max_in_flight=8, max_body_bytes=16_384),
                refresh_seconds=0.5,
            )
            assert plan.replicas == 2 and plan.resources == {"num_cpus": 1}
            yield f"http://127.0.0.1:{port}", key, tiny_lm.model_id
        finally:
            serve.shutdown()
            ray.shutdown()
            database.dispose()


def _client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)


def _ask(client: openai.OpenAI, model: str, text: str) -> str:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=8, temperature=0, logprobs=True
    )
    assert reply.model_extra["probelens"]["probe_version"] == 1
    assert all(0.0 <= t.model_extra["risk"] <= 1.0 for t in reply.choices[0].logprobs.content)
    return reply.choices[0].message.content


def test_two_replicas_answer_and_survive_a_killed_replica(ray_service):
    import ray

    from core.orchestration.serve.ray_serve import replica_actor_names

    url, key, model = ray_service
    client = _client(url, key)
    assert httpx.get(url + "/health", timeout=10).json()["probe_version"] == 1
    with pytest.raises(openai.AuthenticationError):
        _client(url, "pl-not-a-key").chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    before = _ask(client, model, "Capital of Peru?")
    streamed = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Capital of Peru?"}],
        max_tokens=8,
        temperature=0,
        stream=True,
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == before
    assert chunks[-1].model_extra["probelens"]["probe_version"] == 1

    replicas = replica_actor_names()
    assert len(replicas) == 2
    name, namespace = replicas[0]
    ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
    # Every new request is answered: by the replica left, then by the one Ray Serve starts again.
    for i in range(6):
        assert _ask(client, model, "Capital of Peru?") == before, f"request {i} after the kill"
    deadline = time.time() + 90
    while True:
        names = replica_actor_names()
        if len(names) == 2 and (name, namespace) not in names:
            break
        assert time.time() < deadline, f"the killed replica was not replaced: {names}"
        time.sleep(0.5)
    assert _ask(client, model, "Capital of Peru?") == before
