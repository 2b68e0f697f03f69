"""Usage: replica-seconds per endpoint and hour; a project's prices over the price book;
request log indexes for following and pruning.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_hours",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("endpoint_id", sa.Integer, nullable=False),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("hour", sa.Float, nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("units_per_replica", sa.Float, nullable=False),
        sa.Column("replica_seconds", sa.Float, nullable=False),
        sa.UniqueConstraint("endpoint_id", "hour"),
    )
    op.create_index("ix_usage_hours_project_hour", "usage_hours", ["project_id", "hour"])
    op.add_column("projects", sa.Column("prices", sa.JSON, nullable=True))
    op.create_index("ix_request_logs_project_seq", "request_logs", ["project_id", "seq"])
    op.create_index("ix_request_logs_started_at", "request_logs", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_request_logs_started_at", "request_logs")
    op.drop_index("ix_request_logs_project_seq", "request_logs")
    op.drop_column("projects", "prices")
    op.drop_table("usage_hours")
