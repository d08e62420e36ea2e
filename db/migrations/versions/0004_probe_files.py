"""probe files in the database; the probes folder becomes a cache (issue #16)

Every existing version's folder (its row's artifact_path) is read into `probe_files`; a
folder that is missing or is not a probe folder is reported and skipped (that version then
cannot be loaded until it is uploaded again), never fatal. The folders themselves are left
where they are.

Revision ID: 0004
Revises: 0003
"""
import logging

import sqlalchemy as sa
from alembic import op

from core.base.errors import UserError
from core.probes.version_files import content_hash, file_hashes, read_version_files

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    with op.batch_alter_table("probes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_hash", sa.String(length=64), nullable=True))
    op.create_table(
        "probe_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("probe_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["probe_id"], ["probes.id"], name=op.f("fk_probe_files_probe_id_probes"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_probe_files")),
        sa.UniqueConstraint("probe_id", "name", name=op.f("uq_probe_files_probe_id")),
    )
    _copy_folders_in()


def _copy_folders_in() -> None:
    """Each version's folder into probe_files, with the version's content hash on its row."""
    conn = op.get_bind()
    probes = sa.table("probes", sa.column("id", sa.Integer), sa.column("version", sa.Integer),
                      sa.column("artifact_path", sa.String), sa.column("content_hash", sa.String))
    files_table = sa.table("probe_files", sa.column("probe_id", sa.Integer), sa.column("name", sa.String),
                           sa.column("sha256", sa.String), sa.column("size", sa.Integer),
                           sa.column("content", sa.LargeBinary))
    rows = conn.execute(sa.select(probes.c.id, probes.c.version, probes.c.artifact_path).order_by(probes.c.id))
    for probe_id, version, path in rows.all():
        try:
            files = read_version_files(path)
        except (UserError, OSError) as error:
            log.warning("probe v%s: files not moved into the database, skipped (%s)", version, error)
            continue
        hashes = file_hashes(files)
        conn.execute(files_table.insert(), [
            {"probe_id": probe_id, "name": name, "sha256": hashes[name], "size": len(data), "content": data}
            for name, data in sorted(files.items())])
        conn.execute(probes.update().where(probes.c.id == probe_id).values(content_hash=content_hash(hashes)))
        log.info("probe v%s: %d files moved into the database", version, len(files))


def downgrade() -> None:
    op.drop_table("probe_files")
    with op.batch_alter_table("probes", schema=None) as batch_op:
        batch_op.drop_column("content_hash")
