"""Streamlit AppTest helpers: the app on a fresh SQLite file, users, and signing in.

The `app_database` fixture (tests/conftest.py) wraps `app_environment`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "app.py"


def app_environment(tmp_path: Path, monkeypatch) -> Iterator:
    """Yield a migrated SQLite database that the app run by AppTest uses: DATABASE_URL points
    at it, no demo seed, no admin password from the environment, the working folder is the
    repository and Streamlit's resource cache is cleared before and after."""
    import streamlit as st

    from db import open_database

    url = f"sqlite:///{tmp_path / 'app.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("PROBELENS_SEED_DEMO", "0")
    monkeypatch.delenv("PROBELENS_ADMIN_PASSWORD", raising=False)
    monkeypatch.chdir(REPO)
    st.cache_resource.clear()
    database = open_database(url)
    try:
        yield database
    finally:
        database.dispose()
        st.cache_resource.clear()


def add_users(database, *users: tuple[str, str, str]) -> None:
    """Add (name, password, role) users in one transaction."""
    from db.users import add_user

    with database.sessions() as session, session.begin():
        for name, password, role in users:
            add_user(session, name, password, role=role)


def new_app(timeout: float = 120) -> AppTest:
    """app.py in AppTest, not run yet."""
    return AppTest.from_file(str(APP), default_timeout=timeout)


def sign_in(name: str, password: str, page: str | None = None, *, timeout: float = 120) -> AppTest:
    """Run app.py, sign in with the form, and (if given) switch to `page` (e.g. "pages/data.py")."""
    at = new_app(timeout)
    at.run()
    fields = {t.label: t for t in at.text_input}
    fields["User name"].input(name)
    fields["Password"].input(password)
    at.button[0].click()
    at.run()
    if page is not None:
        at.switch_page(page)
        at.run()
    return at


def plain(markdown: str | None) -> str:
    """What a person reads from a markdown string the app escaped (md_escape): AppTest reports
    the markdown source, with every punctuation character behind a backslash."""
    import re

    return re.sub(r"\\(.)", r"\1", markdown or "")


def with_tiny_model_and_probe(database, monkeypatch, tmp_path: Path, tiny_model_dir, tiny_lm) -> None:
    """The tiny model as the app server's model, an active linear probe for it, and an admin
    "boss" (password "boss-password"): what the Generate page needs to stream and score."""
    from tests.support.probe_versions import register_linear_probe

    monkeypatch.setenv("PROBELENS_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    add_users(database, ("boss", "boss-password", "admin"))
    register_linear_probe(database, tiny_lm, activate=True)


def answer_count(database) -> int:
    """How many answers the database holds."""
    from sqlalchemy import func, select

    from db.models import Generation

    with database.reading() as session:
        return int(session.scalar(select(func.count()).select_from(Generation)))
