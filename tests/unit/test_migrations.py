"""The migrations build exactly the schema the ORM expects, and are idempotent."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from rota.store.db import Database
from rota.store.tables import Base


def test_migrations_match_the_orm(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate()
    db.migrate()  # a restart: nothing to do, nothing lost
    with db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diffs == [], diffs
        assert MigrationContext.configure(conn).get_current_revision() == "0002"
    uniques = inspect(db.engine).get_unique_constraints("runs")
    assert any(u["column_names"] == ["task_id", "scheduled_at"] for u in uniques)
    db.dispose()


def test_upgrading_a_0001_store_keeps_its_tasks_and_events(tmp_path):
    from alembic import command
    from alembic.config import Config
    from pathlib import Path

    from sqlalchemy import text

    import rota.store.db as dbmod

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(dbmod.__file__).parent / "migrations"))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(text(
            "INSERT INTO tasks (name, file_path, deployment_name, ingress, type, timezone, schedule, args, env, resources, "
            "status, created_at, updated_at, app_status, app_replica_ids) VALUES ('old', 'echo', 'app', 'Echo', 'daily', 'UTC', "
            "'[]', '{}', '{}', '{}', 'active', '2026-01-01 00:00:00', '2026-01-01 00:00:00', 'RUNNING', '[]')"
        ))  # fmt: skip
        conn.execute(text("INSERT INTO events (task_id, task_name, kind, message, data, at) VALUES (1, 'old', 'created', 'x', '{}', '2026-01-01 00:00:00')"))
    db.migrate()
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT name, project_id, endpoint_id, status FROM tasks")).all() == [("old", 1, None, "active")]
        assert conn.execute(text("SELECT task_name, project_id, endpoint_id FROM events")).all() == [("old", 1, None)]
        assert conn.execute(text("SELECT id, name FROM projects")).all() == [(1, "default")]
    db.dispose()
