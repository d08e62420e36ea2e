"""LLM judge pre-annotation (issue #24): judges, their instructions, reference passages with
full-text search, the judge-results cache, and model (bot) accounts

`users.bot` marks a judge's account (it never signs in). Passages are indexed by the
database's own full-text search: SQLite an FTS5 table kept in step by triggers, PostgreSQL a
generated `tsvector` column with a GIN index (`db.search_index`). No existing data moves.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

from db.search_index import create_statements, drop_statements

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _created(table: str) -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def _created_by(table: str) -> list:
    return [
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f(f"fk_{table}_created_by_users"),
                                ondelete="SET NULL"),
    ]


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bot", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "judges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("base_url", sa.String(length=1000), nullable=False),
        sa.Column("model", sa.String(length=300), nullable=False),
        sa.Column("api_key_env", sa.String(length=200), nullable=True),
        sa.Column("price_input_per_m", sa.Float(), nullable=True),
        sa.Column("price_output_per_m", sa.Float(), nullable=True),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("timeout_s", sa.Float(), nullable=False),
        sa.Column("bot_user_id", sa.Integer(), nullable=False),
        *_created_by("judges"),
        _created("judges"),
        sa.ForeignKeyConstraint(["bot_user_id"], ["users.id"], name=op.f("fk_judges_bot_user_id_users"),
                                ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_judges")),
        sa.UniqueConstraint("name", name=op.f("uq_judges_name")),
    )
    op.create_table(
        "judge_instructions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        *_created_by("judge_instructions"),
        _created("judge_instructions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_judge_instructions")),
        sa.UniqueConstraint("version", name=op.f("uq_judge_instructions_version")),
    )
    op.create_table(
        "reference_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("collection", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=True),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        *_created_by("reference_documents"),
        _created("reference_documents"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reference_documents")),
        sa.UniqueConstraint("content_hash", name=op.f("uq_reference_documents_content_hash")),
    )
    with op.batch_alter_table("reference_documents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reference_documents_collection"), ["collection"], unique=False)
    op.create_table(
        "passages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["document_id"], ["reference_documents.id"],
                                name=op.f("fk_passages_document_id_reference_documents"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_passages")),
    )
    with op.batch_alter_table("passages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_passages_document_id"), ["document_id"], unique=False)
    op.create_table(
        "judge_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation_id", sa.Integer(), nullable=False),
        sa.Column("judge_id", sa.Integer(), nullable=False),
        sa.Column("instructions_version", sa.Integer(), nullable=False),
        sa.Column("evidence_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=True),
        sa.Column("spans", sa.JSON(), nullable=False),
        sa.Column("unmatched", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        _created("judge_results"),
        sa.ForeignKeyConstraint(["generation_id"], ["generations.id"],
                                name=op.f("fk_judge_results_generation_id_generations"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["judge_id"], ["judges.id"], name=op.f("fk_judge_results_judge_id_judges"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["train_runs.id"], name=op.f("fk_judge_results_run_id_train_runs"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_judge_results")),
        sa.UniqueConstraint("generation_id", "judge_id", "instructions_version", "evidence_hash",
                            name=op.f("uq_judge_results_generation_id")),
    )
    with op.batch_alter_table("judge_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_judge_results_generation_id"), ["generation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_judge_results_judge_id"), ["judge_id"], unique=False)
    for statement in create_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_statements(op.get_bind().dialect.name):
        op.execute(statement)
    with op.batch_alter_table("judge_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_judge_results_judge_id"))
        batch_op.drop_index(batch_op.f("ix_judge_results_generation_id"))
    op.drop_table("judge_results")
    with op.batch_alter_table("passages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_passages_document_id"))
    op.drop_table("passages")
    with op.batch_alter_table("reference_documents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reference_documents_collection"))
    op.drop_table("reference_documents")
    op.drop_table("judge_instructions")
    op.drop_table("judges")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("bot")
