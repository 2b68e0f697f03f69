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
