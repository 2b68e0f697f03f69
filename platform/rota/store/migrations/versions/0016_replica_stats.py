"""What endpoint replicas report of themselves every ten seconds: their engine's gauges
(KV cache in use, requests running and waiting) and their hardware (CPU, memory, GPU).

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

FIGURES = ("cpu_percent", "memory_bytes", "gpu_percent", "gpu_memory_bytes", "kv_cache_usage", "engine_running", "engine_waiting")


def upgrade() -> None:
    op.create_table(
        "replica_stats",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("replica", sa.String(128), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        *(sa.Column(name, sa.Float(), nullable=True) for name in FIGURES),
    )
    op.create_index("ix_replica_stats_endpoint_at", "replica_stats", ["endpoint_id", "at"])
    op.create_index("ix_replica_stats_at", "replica_stats", ["at"])


def downgrade() -> None:
    op.drop_table("replica_stats")
