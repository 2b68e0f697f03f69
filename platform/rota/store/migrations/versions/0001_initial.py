"""Initial schema: tasks, runs (unique on task + scheduled instant), events.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from rota.store.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("file_path", sa.String(255), nullable=False),
        sa.Column("deployment_name", sa.String(255), nullable=False),
        sa.Column("ingress", sa.String(255), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("schedule", sa.JSON(), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("env", sa.JSON(), nullable=False),
        sa.Column("resources", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("activated_at", UTCDateTime(), nullable=True),
        sa.Column("next_fire_at", UTCDateTime(), nullable=True),
        sa.Column("due_since", UTCDateTime(), nullable=True),
        sa.Column("desired_min", sa.Integer(), nullable=True),
        sa.Column("desired_max", sa.Integer(), nullable=True),
        sa.Column("applied_min", sa.Integer(), nullable=True),
        sa.Column("applied_max", sa.Integer(), nullable=True),
        sa.Column("app_status", sa.String(16), nullable=False),
        sa.Column("app_message", sa.Text(), nullable=True),
        sa.Column("app_target_replicas", sa.Integer(), nullable=True),
        sa.Column("app_replica_ids", sa.JSON(), nullable=False),
        sa.Column("app_observed_at", UTCDateTime(), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_tasks_name", "tasks", ["name"], unique=True)
    op.create_index("ix_tasks_status", "tasks", ["status"])
    op.create_index("ix_tasks_next_fire_at", "tasks", ["next_fire_at"])
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("scheduled_at", UTCDateTime(), nullable=False),
        sa.Column("fired_at", UTCDateTime(), nullable=False),
        sa.Column("entry", sa.Integer(), nullable=False),
        sa.Column("min_replicas", sa.Integer(), nullable=False),
        sa.Column("max_replicas", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.UniqueConstraint("task_id", "scheduled_at", name="uq_run_task_scheduled"),
    )
    op.create_index("ix_runs_task_id", "runs", ["task_id"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("task_name", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_events_task_id_id", "events", ["task_id", "id"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("runs")
    op.drop_table("tasks")
