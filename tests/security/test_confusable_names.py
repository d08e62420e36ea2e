"""Issue #22, minor: user names that look alike across scripts are one name.

`adm2` and `аdm2` (Cyrillic а) were two accounts that read the same everywhere. The uniqueness
key is now a confusables skeleton; migration 0006 recomputes stored keys (SQLite and
PostgreSQL), keeping both accounts of an existing clash and each one's sign-in by exact name.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

import db.users as users
from core.base.errors import UserError
from core.text.confusables import skeleton
from db.migrate import current_revision, downgrade, head_revision, upgrade
from db.models import User
from tests.support.apptest import add_users

LOOK_ALIKES = [
    ("adm2", "\u0430dm2"),  # Cyrillic а
    ("KOT", "\u039a\u039f\u03a4"),  # Greek Kappa, Omicron, Tau
    ("Bob", "\u0412\u043eb"),  # Cyrillic В, о
    ("ёлка", "\u0435\u0308лка"),  # precomposed and combining diaeresis
    ("Ann", "\uff41nn"),  # full width, as before
]


@pytest.mark.parametrize(("first", "second"), LOOK_ALIKES)
def test_a_name_that_looks_like_an_existing_one_is_refused(sqlite_db, first, second):
    assert first != second and skeleton(first) == skeleton(second)
    add_users(sqlite_db, (first, "first-password", "admin"))
    with pytest.raises(UserError, match="already exists"):
        add_users(sqlite_db, (second, "second-password", "annotator"))
    with sqlite_db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1


def test_names_that_only_share_letters_stay_apart():
    names = ("olga", "olha", "anna", "ana", "adm1", "adm2", "мир")
    assert len({skeleton(n) for n in names}) == len(names)
    assert skeleton("мир") == skeleton("mир")  # but a Latin m in a Cyrillic word is the same name


def test_0006_rekeys_existing_names_and_keeps_both_sides_of_a_clash(any_db):
    downgrade(any_db.engine, "0005")
    hashed = users.hasher.hash("a-long-password")
    with any_db.engine.begin() as conn:
        for name in ("adm2", "\u0430dm2", "Olga"):  # keys as 0002 wrote them: NFKC + casefold
            conn.execute(
                text(
                    "INSERT INTO users (name, name_key, password_hash, role, active, failed_logins, created_at) "
                    "VALUES (:n, :k, :h, 'annotator', :a, 0, CURRENT_TIMESTAMP)"
                ),
                {"n": name, "k": name.casefold(), "h": hashed, "a": True},
            )
    upgrade(any_db.engine)
    assert current_revision(any_db.engine) == head_revision()
    with any_db.sessions() as session:
        keys = {u.name: u.name_key for u in session.scalars(select(User))}
        assert keys["adm2"] == "adm2" and keys["Olga"] == "olga"
        assert keys["\u0430dm2"].startswith("adm2#")  # the newer of the clash keeps its account
        # each signs in as itself by its exact name; the look-alike of a new name is refused
        assert users.get_user(session, "\u0430dm2").name == "\u0430dm2"
        assert users.get_user(session, "adm2").name == "adm2"
    assert users.login(any_db, "\u0430dm2", "a-long-password").name == "\u0430dm2"
    with pytest.raises(UserError, match="already exists"):
        add_users(any_db, ("ADM2", "another-password", "annotator"))
    downgrade(any_db.engine, "0005")
    with any_db.engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT name_key FROM users")).scalars()) == ["adm2", "olga", "\u0430dm2"]
    upgrade(any_db.engine)
