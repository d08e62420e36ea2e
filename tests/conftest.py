"""Shared fixtures. Nothing here downloads: tokenizers are trained locally in milliseconds.

Plain helpers shared by test modules are in tests/support/ (import `tests.support.<module>`);
test modules never import from each other.
"""

from __future__ import annotations

import os

import pytest

# Plain `assert`s in the shared helpers report their values like those in test modules.
pytest.register_assert_rewrite("tests.support")

# One Chromium for the whole run (tests/e2e and tests/security): two sync Playwright sessions
# cannot be open at once.
from tests.support.browser_fixtures import chromium, demo_seeded, page  # noqa: E402,F401


# Each test's report on its item, so fixtures can tell a failure (screenshots).
@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(autouse=True)
def cheap_password_hashing(request, monkeypatch):
    """Real argon2 at its lowest cost for passwords made and checked in the test process: the
    product's cost (~0.2 s a hash on two cores) spent on every account of every test added
    minutes to the suite. Tests that measure the cost itself are marked `real_password_hashing`.
    Apps served in their own process hash at the product's cost (and upgrade cheap hashes)."""
    from argon2 import PasswordHasher

    from db import users

    if not request.node.get_closest_marker("real_password_hashing"):
        monkeypatch.setattr(users, "hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    monkeypatch.setattr(users, "_dummy_hash", None)  # made again with the hasher in use


@pytest.fixture()
def warnings_are_errors():
    """Undefined metrics must be handled, not warned about (UndefinedMetricWarning etc.)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# Workers started by tests exit after their run instead of staying warm for 5 minutes
# (tests/test_retrain.py turns warm workers on where it tests them).
os.environ.setdefault("PROBELENS_WORKER_IDLE_SECONDS", "0")
# One thread per process: the suite runs a test process, app servers, workers and Chromium side
# by side on two cores, where PyTorch's thread pools only fight each other (set before torch loads).
os.environ.setdefault("OMP_NUM_THREADS", "1")

# `./test.sh -m "not slow"` is the day-to-day subset: everything but the browser, the embedded
# model, Ray and the worker processes.
SLOW_MARKERS = ("e2e", "integration")
SLOW_MODULES = (
    "test_ray_runs",
    "test_retrain",
    "test_lora_probe",
    "test_lora_checkpoints",
    "test_lora_cli",
    "test_lora_versions",
    "test_seed_run",
    "test_workers_reaped",
    "test_batch",
    "test_batch_cancel",
    "test_probes_page",
    "test_data_page",
    "test_data_judge_tab",
    "test_label_run",
    "test_probe_files",
    "test_gpu_check",
    "test_serve",
    "test_serve_ray",
    "test_adapter_uploads",
)


# Modules that start a Ray cluster in the test process: under pytest-xdist they share one worker,
# so two local clusters never fight over the same two cores and /tmp/ray.
RAY_MODULES = ("test_ray_runs", "test_serve_ray")


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in SLOW_MODULES or any(item.get_closest_marker(m) for m in SLOW_MARKERS):
            item.add_marker(pytest.mark.slow)
        # `--dist loadgroup` (./test.sh) keeps a module on one worker, so its module-scoped
        # fixtures (apps, servers, trained probes) are built once, not once per worker.
        group = "ray" if module in RAY_MODULES else item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))


# Mixed scripts so the tiny vocabulary learns a few multi-byte merges (CJK, emoji, accents).
_TINY_CORPUS = [
    "The city of Lviv (German: Lemberg) was founded in 1256 by King Daniel of Galicia.",
    "Marie Curie won the Nobel Prize in Physics in 1903 and in Chemistry in 1911.",
    "Café, naïve, résumé, Zürich, Kraków, São Paulo, Reykjavík.",
    "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다.",
    "Emoji: 😀 🎉 👍🏽 👨‍👩‍👧 🇫🇷 done!\n\nA new paragraph.\tTabbed.",
    "  leading spaces,  double  spaces, and a trailing space ",
]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A byte-level BPE tokenizer (~300 tokens) wrapped like a hub tokenizer, built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    backend.train_from_iterator(_TINY_CORPUS * 3, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_tokenizer, tmp_path_factory):
    """A randomly initialised 4-layer Llama saved like a hub model, loadable by path."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=tiny_tokenizer.eos_token_id,
        bos_token_id=tiny_tokenizer.eos_token_id,
        pad_token_id=tiny_tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    target = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(target)
    tiny_tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir):
    from core.engine.model import load_model

    return load_model(str(tiny_model_dir))


@pytest.fixture()
def isolated_cache(tmp_path, monkeypatch):
    """Activations and any other cache go to a fresh folder; the embedded model cache is shared."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("PROBELENS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PROBELENS_MODEL_CACHE_DIR", str(repo / "data" / "cache" / "models"))
    return tmp_path / "cache"


@pytest.fixture()
def app_database(tmp_path, monkeypatch):
    """The app for Streamlit's AppTest on a fresh, migrated SQLite file (yielded): no demo seed,
    no admin password from the environment, run from the repository, resource cache cleared.
    Sign in with tests.support.apptest.sign_in."""
    from tests.support.apptest import app_environment

    yield from app_environment(tmp_path, monkeypatch)


# --- databases for db/ tests: a real SQLite file, a real PostgreSQL schema per test -------

import os as _os  # noqa: E402

PG_TEST_URL = _os.environ.get("PROBELENS_TEST_PG_URL", "postgresql://root@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def _pg_unreachable() -> str | None:
    """Why PostgreSQL cannot be used (None if it can): checked once per run."""
    try:
        import psycopg

        psycopg.connect(PG_TEST_URL, connect_timeout=3).close()
    except Exception as error:
        return f"PostgreSQL not reachable at {PG_TEST_URL}: {type(error).__name__}: {error}".strip()
    return None


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_TEST_URL, autocommit=True) as conn:
        conn.execute(sql)


def _with_search_path(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


@pytest.fixture()
def sqlite_db(tmp_path):
    """A migrated SQLite database in a file under tmp_path (WAL, foreign keys, busy timeout)."""
    from db import open_database

    db = open_database(f"sqlite:///{tmp_path / 'probelens.db'}")
    yield db
    db.dispose()


@pytest.fixture()
def pg_db(_pg_unreachable):
    """A migrated PostgreSQL database in a fresh schema, dropped afterwards. Mark tests `postgres`."""
    import uuid

    from db import open_database

    if _pg_unreachable:
        print(_pg_unreachable)
        pytest.skip(_pg_unreachable)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    _pg_admin(f'CREATE SCHEMA "{schema}"')
    try:
        db = open_database(_with_search_path(PG_TEST_URL, schema))
        try:
            yield db
        finally:
            db.dispose()
    finally:
        _pg_admin(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db(request):
    """The same test on SQLite and on PostgreSQL."""
    return request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "pg_db")


@pytest.fixture()
def make_generation():
    """Insert one generation (and its dataset if new) straight into the tables; returns it flushed."""
    import hashlib
    import uuid

    from sqlalchemy import select

    from db.models import Dataset, Generation

    def make(session, completion: str, *, dataset: str = "test-set", prompt: str = "Tell me a fact."):
        found = session.scalar(select(Dataset).where(Dataset.name == dataset))
        generation = Generation(
            dataset=found or Dataset(name=dataset),
            conversation=[{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}],
            completion=completion,
            content_hash=hashlib.sha256(f"{uuid.uuid4()}{completion}".encode()).hexdigest(),
            extra={},
        )
        session.add(generation)
        session.flush()
        return generation

    return make
