"""A Ray cluster runs the code of anyone who reaches it: ProbeLens refuses a non-local
`PROBELENS_RAY_ADDRESS` unless Ray's token authentication is configured (before any run row is
written), and a run's Ray task carries the database URL without its password, which the worker
takes from its own environment. No cluster is needed: the refusal comes first."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.base import settings
from core.base.errors import UserError
from core.orchestration import launcher, ray_cluster
from core.orchestration.batch import BatchParams
from db.credentials import with_local_password, without_password

NON_LOCAL = ["auto", "ray://head.example:10001", "10.0.0.5:6379", "ray://10.0.0.5:10001", "head"]
LOCAL = ["local", "ray://127.0.0.1:10001", "localhost:6379", "ray://[::1]:10001"]


@pytest.fixture()
def no_token(monkeypatch, tmp_path):
    """No Ray authentication anywhere: not in the environment, not in ~/.ray/auth_token."""
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.mark.parametrize("address", NON_LOCAL)
def test_a_non_local_ray_address_without_token_authentication_is_refused(no_token, monkeypatch, address):
    monkeypatch.setenv("PROBELENS_RAY_ADDRESS", address)
    with pytest.raises(UserError, match="RAY_AUTH_MODE=token"):
        ray_cluster.enabled()
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # the mode without a token is not enough
    with pytest.raises(UserError, match="token authentication"):
        settings.ray_address()


@pytest.mark.parametrize("address", LOCAL)
def test_an_in_process_or_loopback_ray_needs_no_token(no_token, monkeypatch, address):
    monkeypatch.setenv("PROBELENS_RAY_ADDRESS", address)
    assert ray_cluster.enabled()


def test_token_authentication_from_the_environment_or_a_token_file(no_token, monkeypatch, tmp_path):
    monkeypatch.setenv("PROBELENS_RAY_ADDRESS", "ray://head.example:10001")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "0123456789abcdef")
    assert settings.ray_address() == "ray://head.example:10001"
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    token = tmp_path / "token"
    token.write_text("0123456789abcdef\n", encoding="utf-8")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    assert settings.ray_address() == "ray://head.example:10001"
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH")
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("0123456789abcdef", encoding="utf-8")  # Ray's default file
    assert settings.ray_address() == "ray://head.example:10001"
    token.write_text("", encoding="utf-8")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))  # an empty token file is no token
    with pytest.raises(UserError):
        settings.ray_address()


def test_a_run_is_refused_before_its_row_is_written(no_token, monkeypatch, sqlite_db):
    from db.models import TrainRun

    monkeypatch.setenv("PROBELENS_RAY_ADDRESS", "ray://head.example:10001")
    params = BatchParams(prompts=[[{"role": "user", "content": "Q?"}]], dataset="ray-refused")
    with pytest.raises(UserError, match="token authentication"):
        launcher.start_batch(sqlite_db, params, None)
    with sqlite_db.sessions() as session:
        assert session.scalar(select(func.count(TrainRun.id))) == 0


PG = "postgresql+psycopg://probelens:s3cret-pw@db.internal:5432/probelens"


def test_a_ray_task_carries_no_database_password(monkeypatch):
    """What the launcher hands a run's task: the URL without its password."""

    class Store:  # the one attribute task_arguments reads: a Database's URL with its password
        full_url = PG

    url, run_id = launcher.task_arguments(Store(), 7)
    assert run_id == 7
    assert "s3cret-pw" not in url and url == without_password(PG)
    assert url.startswith("postgresql+psycopg://probelens@db.internal:5432/probelens")


def test_the_worker_takes_the_password_from_its_own_environment(monkeypatch):
    task_url = without_password(PG)
    monkeypatch.setenv("DATABASE_URL", PG)  # the node's `ray start` environment
    assert with_local_password(task_url) == PG
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://probelens:other@elsewhere:5432/probelens")
    assert with_local_password(task_url) == task_url  # another database's password is never used
    monkeypatch.delenv("DATABASE_URL")
    assert with_local_password(task_url) == task_url  # then PGPASSWORD / ~/.pgpass, as libpq reads them
    assert with_local_password("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
