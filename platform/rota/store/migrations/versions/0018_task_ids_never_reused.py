"""Task ids are never used twice. Migration 0011 rebuilt ``tasks`` on SQLite without
AUTOINCREMENT, so SQLite could give a new task the id of the newest deleted one, which
then inherited that task's fires (its runs, and the last fire its schedule goes on
from), even across projects. The table is rebuilt with AUTOINCREMENT, numbering past
every id a task ever had (its runs and events remember them). Runs no task can own are
deleted: those of deleted tasks, and on SQLite (one control plane, one clock) those fired
before their task was created, which belonged to an earlier task with the same id. (Events
of such an earlier task stay listed under the later one: nothing tells them apart.)

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"  # PostgreSQL's sequences never give an id twice
    ever = (
        "SELECT MAX(m) FROM (SELECT MAX(id) AS m FROM tasks UNION ALL SELECT MAX(task_id) FROM events"
        " UNION ALL SELECT MAX(task_id) FROM runs UNION ALL SELECT MAX(owner_task_id) FROM endpoints) AS ids"
    )
    highest = bind.scalar(sa.text(ever)) if sqlite else None  # before the orphans' runs go
    op.execute(sa.text("DELETE FROM runs WHERE NOT EXISTS (SELECT 1 FROM tasks WHERE tasks.id = runs.task_id)"))
    if not sqlite:
        return
    op.execute(sa.text("DELETE FROM runs WHERE fired_at < (SELECT created_at FROM tasks WHERE tasks.id = runs.task_id)"))
    with op.batch_alter_table("tasks", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
        pass
    if highest:
        op.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'tasks'"))
        op.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('tasks', :seq)").bindparams(seq=int(highest)))


def downgrade() -> None:
    pass  # AUTOINCREMENT does no harm to the schema before
