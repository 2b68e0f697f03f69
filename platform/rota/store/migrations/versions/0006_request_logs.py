"""Request logs: every call through the base URL (``rota.domain.requests``); a project's
retention for them.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "request_logs",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("record_id", sa.String(32), nullable=False, unique=True),
        sa.Column("request_id", sa.String(128), nullable=False, index=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("project_id", sa.Integer, nullable=True),
        sa.Column("key_id", sa.Integer, nullable=True),
        sa.Column("key_prefix", sa.String(16), nullable=True),
        sa.Column("endpoint_id", sa.Integer, nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("ttft_ms", sa.Float, nullable=True),
        sa.Column("queue_ms", sa.Float, nullable=True),
        sa.Column("wake_ms", sa.Float, nullable=True),
        sa.Column("input_tokens", sa.Integer, nullable=True),
        sa.Column("output_tokens", sa.Integer, nullable=True),
        sa.Column("finish_reasons", sa.JSON, nullable=False),
        sa.Column("replica_id", sa.String(128), nullable=True),
        sa.Column("request_content", sa.Text, nullable=True),
        sa.Column("response_content", sa.Text, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_request_logs_endpoint_time", "request_logs", ["endpoint_id", "started_at", "seq"])
    op.create_index("ix_request_logs_project_time", "request_logs", ["project_id", "started_at", "seq"])
    op.add_column("projects", sa.Column("request_log_retention_days", sa.Integer, nullable=True))


def downgrade() -> None:
    op.drop_column("projects", "request_log_retention_days")
    op.drop_table("request_logs")
