"""user name keys read Cyrillic and Greek look-alikes as Latin (issue #22)

`users.name_key` becomes `core.text.confusables.skeleton` of the name, so `аdm2` (Cyrillic а)
and `adm2` are one name. Existing keys are recomputed; when two existing accounts now share a
key, the older keeps it and the newer gets `<key>#<id>` (it still signs in by its exact name),
reported in the log; no account is lost. Downgrade restores the NFKC + case-fold keys of 0002.

Revision ID: 0006
Revises: 0005
"""
import logging
import unicodedata
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from core.text.confusables import skeleton

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")
MAX_NAME_LENGTH = 100


def _rekey(key_of: Callable[[str], str]) -> None:
    conn = op.get_bind()
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("name", sa.String),
                     sa.column("name_key", sa.String))
    rows = conn.execute(sa.select(users.c.id, users.c.name).order_by(users.c.id)).all()
    keys: dict[int, str] = {}
    seen: set[str] = set()
    for user_id, name in rows:
        key = key_of(name.strip())[:MAX_NAME_LENGTH]
        if key in seen:
            log.warning("user %d's name looks like an older account's; its key becomes %s#%d", user_id, key[:80], user_id)
            key = f"{key[:80]}#{user_id}"
        seen.add(key)
        keys[user_id] = key
    # two passes, so no row takes a key another row still holds (the unique constraint stays on)
    for user_id in keys:
        conn.execute(users.update().where(users.c.id == user_id).values(name_key=f"#moving#{user_id}"))
    for user_id, key in keys.items():
        conn.execute(users.update().where(users.c.id == user_id).values(name_key=key))


def upgrade() -> None:
    _rekey(skeleton)


def downgrade() -> None:
    _rekey(lambda name: unicodedata.normalize("NFKC", name).casefold())
