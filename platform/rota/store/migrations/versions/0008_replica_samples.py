"""Replica samples: an endpoint's running and target replicas and bounds every ten seconds,
kept a day (its monitoring series).

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
    op.create_table(
        "replica_samples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("endpoint_id", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("running", sa.Integer, nullable=False),
        sa.Column("target", sa.Integer, nullable=True),
        sa.Column("min", sa.Integer, nullable=True),
        sa.Column("max", sa.Integer, nullable=True),
    )
    op.create_index("ix_replica_samples_endpoint_at", "replica_samples", ["endpoint_id", "at"])
    op.create_index("ix_replica_samples_at", "replica_samples", ["at"])  # pruning


def downgrade() -> None:
    op.drop_table("replica_samples")
