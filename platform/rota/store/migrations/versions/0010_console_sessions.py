"""Console sessions end on sign-out: a key's sessions issued before this instant are over.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from rota.store.base import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("sessions_after", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("sessions_after")
