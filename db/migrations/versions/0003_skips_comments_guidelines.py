"""skips, answer comments and flags, versioned guidelines (issue #14, items 8-9)

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "skips",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("skipped_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["generation_id"], ["generations.id"],
                                name=op.f("fk_skips_generation_id_generations"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_skips_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_skips")),
        sa.UniqueConstraint("generation_id", "user_id", name=op.f("uq_skips_generation_id")),
    )
    with op.batch_alter_table("skips", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_skips_generation_id"), ["generation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_skips_user_id"), ["user_id"], unique=False)

    op.create_table(
        "answer_comments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["generation_id"], ["generations.id"],
                                name=op.f("fk_answer_comments_generation_id_generations"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["resolved_by"], ["users.id"], name=op.f("fk_answer_comments_resolved_by_users"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_answer_comments_user_id_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_answer_comments")),
    )
    with op.batch_alter_table("answer_comments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_answer_comments_generation_id"), ["generation_id"], unique=False)

    op.create_table(
        "guidelines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_guidelines_created_by_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guidelines")),
        sa.UniqueConstraint("version", name=op.f("uq_guidelines_version")),
    )


def downgrade() -> None:
    op.drop_table("guidelines")
    with op.batch_alter_table("answer_comments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_answer_comments_generation_id"))
    op.drop_table("answer_comments")
    with op.batch_alter_table("skips", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_skips_user_id"))
        batch_op.drop_index(batch_op.f("ix_skips_generation_id"))
    op.drop_table("skips")
