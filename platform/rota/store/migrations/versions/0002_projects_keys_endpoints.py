"""Projects, API keys and dedicated endpoints; tasks and events belong to a project,
a task may drive an endpoint, an event may be an endpoint's.

Existing rows go to the project ``default`` (id 1), created here.

Revision ID: 0002
Revises: 0001
"""

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

from rota.store.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    projects = op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.bulk_insert(projects, [{"id": 1, "name": "default", "created_at": datetime.now(timezone.utc)}])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_api_keys_project_id", "api_keys", ["project_id"])
    op.create_table(
        "endpoints",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("routing_key", sa.String(96), nullable=False, unique=True),
        sa.Column("template", sa.String(63), nullable=True),
        sa.Column("flavor", sa.String(32), nullable=True),
        sa.Column("gpu_type", sa.String(32), nullable=True),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("revision", sa.String(128), nullable=True),
        sa.Column("file_path", sa.String(255), nullable=False),
        sa.Column("deployment_name", sa.String(255), nullable=False),
        sa.Column("ingress", sa.String(255), nullable=False),
        sa.Column("engine", sa.JSON(), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("resources", sa.JSON(), nullable=False),
        sa.Column("scaling", sa.JSON(), nullable=False),
        sa.Column("env", sa.JSON(), nullable=False),
        sa.Column("desired", sa.String(16), nullable=False),
        sa.Column("scheduled_min", sa.Integer(), nullable=True),
        sa.Column("scheduled_max", sa.Integer(), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("ready_generation", sa.Integer(), nullable=True),
        sa.Column("applied_min", sa.Integer(), nullable=True),
        sa.Column("applied_max", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(32), nullable=True),
        sa.Column("reported_phase", sa.String(32), nullable=True),
        sa.Column("error_code", sa.String(32), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("target_replicas", sa.Integer(), nullable=True),
        sa.Column("replica_ids", sa.JSON(), nullable=False),
        sa.Column("observed_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_endpoints_project_id", "endpoints", ["project_id"])
    op.create_index("ix_endpoints_status", "endpoints", ["status"])

    with op.batch_alter_table("tasks") as t:
        t.add_column(sa.Column("project_id", sa.Integer(), nullable=False, server_default="1"))
        t.add_column(sa.Column("endpoint_id", sa.Integer(), nullable=True))
        t.alter_column("file_path", existing_type=sa.String(255), nullable=True)
        t.alter_column("deployment_name", existing_type=sa.String(255), nullable=True)
        t.alter_column("ingress", existing_type=sa.String(255), nullable=True)
        t.drop_index("ix_tasks_name")
        t.create_index("ix_tasks_name", ["name"])
        t.create_index("ix_tasks_project_id", ["project_id"])
        t.create_index("ix_tasks_endpoint_id", ["endpoint_id"])
        t.create_unique_constraint("uq_task_project_name", ["project_id", "name"])
    with op.batch_alter_table("tasks") as t:
        t.alter_column("project_id", existing_type=sa.Integer(), server_default=None)

    with op.batch_alter_table("events") as t:
        t.add_column(sa.Column("project_id", sa.Integer(), nullable=False, server_default="1"))
        t.add_column(sa.Column("endpoint_id", sa.Integer(), nullable=True))
        t.add_column(sa.Column("endpoint_name", sa.String(63), nullable=True))
        t.alter_column("task_id", existing_type=sa.Integer(), nullable=True)
        t.alter_column("task_name", existing_type=sa.String(63), nullable=True)
        t.create_index("ix_events_project_id", ["project_id"])
        t.create_index("ix_events_endpoint_id_id", ["endpoint_id", "id"])
    with op.batch_alter_table("events") as t:
        t.alter_column("project_id", existing_type=sa.Integer(), server_default=None)


def downgrade() -> None:
    raise NotImplementedError("0002 is not reversible: restore a backup taken before upgrading")
