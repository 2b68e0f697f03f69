"""A task is a schedule over an endpoint.

Tasks keep their schedule and status columns only (what ran is their endpoint's, since
revision 0003). A task's status is its schedule's only: ``failed`` was a missed one-off
(now ``missed``) or a failed application (the endpoint shows that now; the task goes back
to ``active``, or ``completed`` for a one-off that fired). A task whose endpoint was
already gone (a 0.1 race) drives nothing: it is deleted, with an event.

Revision ID: 0004
Revises: 0003
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from rota.store.migrations.rebuild import event, insert, last_id, rows, set_last_id
from rota.store.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

KEEP = (
    "id",
    "project_id",
    "name",
    "endpoint_id",
    "type",
    "timezone",
    "schedule",
    "status",
    "status_reason",
    "created_at",
    "updated_at",
    "activated_at",
    "next_fire_at",
    "due_since",
)


def upgrade() -> None:
    tasks, seq = rows("tasks"), last_id("tasks")
    endpoints = {e["id"] for e in rows("endpoints")}
    fired = {r[0] for r in op.get_bind().execute(sa.text("SELECT DISTINCT task_id FROM runs"))}
    op.drop_table("tasks")
    _create_tasks()
    gone = [t for t in tasks if t["endpoint_id"] not in endpoints]
    message = "deleted by the upgrade: the endpoint it drove no longer existed"
    insert(
        "events",
        [event(t["project_id"], "deleted", message, t["updated_at"], task_id=t["id"], task_name=t["name"]) for t in gone],
    )
    kept = [t for t in tasks if t["endpoint_id"] in endpoints]
    for t in kept:
        t["status"], t["status_reason"] = _task_status(t, t["id"] in fired)
    insert("tasks", [{k: t[k] for k in KEEP} for t in kept])
    set_last_id("tasks", max([seq, *[t["id"] for t in tasks]]))


def _task_status(t: dict[str, Any], fired: bool) -> tuple[str, str | None]:
    if t["status"] != "failed":
        return t["status"], t["status_reason"]
    if "missed" in (t["status_reason"] or "") or (t["type"] == "one_off" and not fired):
        return "missed", t["status_reason"]
    return ("completed" if t["type"] == "one_off" else "active"), None


def _create_tasks() -> None:
    c, S, J, I, T, D = sa.Column, sa.String, sa.JSON, sa.Integer, sa.Text, UTCDateTime  # noqa: E741
    op.create_table(
        "tasks",
        c("id", I(), primary_key=True, autoincrement=True),
        c("project_id", I(), nullable=False),
        c("name", S(63), nullable=False),
        c("endpoint_id", I(), nullable=False),
        c("type", S(16), nullable=False),
        c("timezone", S(64), nullable=False),
        c("schedule", J(), nullable=False),
        c("status", S(16), nullable=False),
        c("status_reason", T(), nullable=True),
        c("created_at", D(), nullable=False),
        c("updated_at", D(), nullable=False),
        c("activated_at", D(), nullable=True),
        c("next_fire_at", D(), nullable=True),
        c("due_since", D(), nullable=True),
        sa.UniqueConstraint("project_id", "name", name="uq_task_project_name"),
        sqlite_autoincrement=True,
    )
    for col in ("project_id", "name", "endpoint_id", "status", "next_fire_at"):
        op.create_index(f"ix_tasks_{col}", "tasks", [col])


def downgrade() -> None:
    raise NotImplementedError("0004 is not reversible: restore a backup taken before upgrading")
