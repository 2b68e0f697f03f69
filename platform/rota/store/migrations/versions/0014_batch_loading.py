"""When a batch's lines were all queued (``loaded_at``): a batch is queued a chunk per
transaction now, and is never finalised before. Batches so far went in at once. Who loads
it holds a lease (``loading_until``); the tries so far, the last error, and when it failed
if it was given up. And an
index on when async requests finished: each endpoint's answers in the last minute (its
throughput) are counted from it.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("loaded_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("loading_until", sa.Float(), nullable=True))
        batch.add_column(sa.Column("load_tries", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("load_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("failed_at", sa.Float(), nullable=True))
    op.execute("UPDATE batches SET loaded_at = created_at")
    op.create_index("ix_async_requests_finished", "async_requests", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_async_requests_finished", table_name="async_requests")
    with op.batch_alter_table("batches") as batch:
        for column in ("failed_at", "load_error", "load_tries", "loading_until", "loaded_at"):
            batch.drop_column(column)
