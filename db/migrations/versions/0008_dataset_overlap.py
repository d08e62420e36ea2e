"""overlap per dataset: k annotators per answer, for a percentage of its answers (issue #25)

`datasets.overlap_k` (annotators each chosen answer should get; NULL = 1, no overlap) and
`datasets.overlap_percent` (which share of the dataset's answers asks for k; NULL = 100). An
admin sets them once per dataset (Data page, `dataset.overlap` event) and the queue follows
them: an answer that has fewer annotators than its dataset asks stays in the others' queues.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("overlap_k", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("overlap_percent", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("overlap_percent")
        batch.drop_column("overlap_k")
