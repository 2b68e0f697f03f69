"""Ready by T: measured cold starts, ready_by tasks, and whether each early fire was ready.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from rota.store.base import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cold_starts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("template", sa.String(63), nullable=True),
        sa.Column("gpu_type", sa.String(32), nullable=True),
        sa.Column("began_at", UTCDateTime(), nullable=False),
        sa.Column("ready_at", UTCDateTime(), nullable=False),
        sa.Column("phases", sa.JSON(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
    )
    op.create_index("ix_cold_starts_endpoint", "cold_starts", ["endpoint_id", "id"])
    op.create_index("ix_cold_starts_kind", "cold_starts", ["project_id", "template", "gpu_type"])
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("ready_by", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("ready_state", sa.String(16), nullable=True))
        batch.add_column(sa.Column("ready_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("lead_s", sa.Float(), nullable=True))
        batch.create_index("ix_runs_ready_state", ["ready_state"])


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_ready_state")
        batch.drop_column("lead_s")
        batch.drop_column("ready_at")
        batch.drop_column("ready_state")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("ready_by")
    op.drop_index("ix_cold_starts_kind", "cold_starts")
    op.drop_index("ix_cold_starts_endpoint", "cold_starts")
    op.drop_table("cold_starts")
