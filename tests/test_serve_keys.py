"""API keys of the serving API (migration 0005) on SQLite and PostgreSQL: stored as a hash, shown
once, revocable, revoked by a role change or a deactivation, last use recorded; and the CLI."""

from __future__ import annotations

import hashlib

from sqlalchemy import inspect, select

from db.api_keys import create_key, list_keys, resolve_key, revoke_key
from db.migrate import current_revision, downgrade, upgrade
from db.models import ApiKey
from db.users import add_user, deactivate, get_user, set_role


def test_0005_adds_the_api_keys_table_and_round_trips(any_db):
    assert "api_keys" in inspect(any_db.engine).get_table_names()
    downgrade(any_db.engine, "0004")
    assert "api_keys" not in inspect(any_db.engine).get_table_names()
    upgrade(any_db.engine)
    assert current_revision(any_db.engine) == "0007"
    assert "api_keys" in inspect(any_db.engine).get_table_names()


def test_keys_are_hashed_revocable_and_end_with_the_role_or_the_account(any_db):
    with any_db.sessions() as session, session.begin():
        boss = add_user(session, "boss", "boss-password", "admin")
        ann = add_user(session, "ann", "ann-password", "annotator")
        rita = add_user(session, "rita", "rita-password", "reviewer")
        _row, one = create_key(session, ann, "laptop", actor=boss)
        _row, two = create_key(session, ann, "server", actor=boss)
        _row, three = create_key(session, rita, "ci", actor=boss)
    with any_db.sessions() as session, session.begin():
        stored = list(session.scalars(select(ApiKey.key_hash)))
        assert hashlib.sha256(one.encode()).hexdigest() in stored and one not in stored
        owner = resolve_key(session, one)
        assert owner is not None and owner.user_name == "ann"
        assert resolve_key(session, "pl-wrong") is None and resolve_key(session, None) is None
    with any_db.sessions() as session:
        listed = {k["name"]: k for k in list_keys(session)}
        assert listed["laptop"]["last_used_at"] is not None and listed["server"]["last_used_at"] is None
    with any_db.sessions() as session, session.begin():
        revoke_key(session, listed["laptop"]["id"], actor=get_user(session, "boss"))
        assert resolve_key(session, one) is None and resolve_key(session, two) is not None
        set_role(session, "ann", "reviewer", actor=get_user(session, "boss"))
        deactivate(session, "rita", actor=get_user(session, "boss"))
    with any_db.sessions() as session:
        assert resolve_key(session, two) is None and resolve_key(session, three) is None


def test_cli_api_key_create_list_revoke(tmp_path, monkeypatch, capsys):
    from core.orchestration.cli import main
    from db import open_database

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("PROBELENS_NEW_PASSWORD", "ann-password")
    assert main(["users", "add", "ann"]) == 0
    assert main(["users", "api-key", "create", "ann", "--key-name", "app"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("pl-")
    assert main(["users", "api-key", "list"]) == 0
    listing = capsys.readouterr().out
    assert "ann\tapp\t" in listing and "never used" in listing and key not in listing
    assert main(["users", "api-key", "create", "ann", "--capture", "all"]) == 2  # no dataset named
    assert main(["users", "api-key", "revoke", "ann"]) == 0
    with open_database(url).sessions() as session:
        assert resolve_key(session, key) is None


def test_the_users_page_creates_a_key_shown_once_and_revokes_it(app_database):
    from tests.support.apptest import add_users, sign_in

    add_users(app_database, ("boss", "boss-password", "admin"), ("ann", "ann-password", "annotator"))
    at = sign_in("boss", "boss-password", "pages/users.py")
    assert not at.exception
    [name] = [t for t in at.text_input if t.label == "Key name"]
    name.input("laptop")
    [owner] = [s for s in at.selectbox if s.label == "For user"]
    owner.select("ann")
    [create] = [b for b in at.button if b.label == "Create"]
    create.click()
    at.run()
    assert not at.exception
    [shown] = [c.value for c in at.code]
    with app_database.sessions() as session:
        assert resolve_key(session, shown) is not None
    at.run()
    assert shown not in [c.value for c in at.code]  # shown once
    [revoke] = [b for b in at.button if b.label.startswith("Revoke") and "laptop" in b.label]
    revoke.click()
    at.run()
    with app_database.sessions() as session:
        assert resolve_key(session, shown) is None
