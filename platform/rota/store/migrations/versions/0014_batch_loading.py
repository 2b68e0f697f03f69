"""When a batch's lines were all queued (``loaded_at``): a batch is queued a chunk per
transaction now, and is never finalised before. Batches so far went in at once.

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
    op.execute("UPDATE batches SET loaded_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("loaded_at")
