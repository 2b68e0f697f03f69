"""Engine and sessions for SQLite (default) or PostgreSQL, and the migrations.

A unit of work that breaks a unique constraint is a ``Conflict`` naming the field, and
one that updates a row another request deleted is a ``NotFound``: racing requests get a
409 or a 404, never a 500.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from rota.domain.errors import Conflict, NotFound
from rota.store.single import sqlite_path

MIGRATION_LOCK = 0x726F7461  # PostgreSQL advisory lock held while migrating ("rota")

# Unique constraints -> the field a clash is about (PostgreSQL names the constraint,
# SQLite its columns).
_FIELDS = {
    "uq_endpoint_project_name": "name",
    "endpoints.project_id, endpoints.name": "name",
    "uq_endpoint_project_routing_key": "routing_key",
    "endpoints.project_id, endpoints.routing_key": "routing_key",
    "uq_endpoint_route_prefix": "name",
    "endpoints.route_prefix": "name",
    "uq_task_project_name": "name",
    "tasks.project_id, tasks.name": "name",
    "projects_name_key": "project",
    "projects.name": "project",
    "uq_run_task_scheduled": "scheduled_at",
    "runs.task_id, runs.scheduled_at": "scheduled_at",
}


def conflict(e: IntegrityError) -> Conflict:
    text = str(e.orig)
    field = next((f for marker, f in _FIELDS.items() if marker in text), None)
    what = {"name": "the name", "routing_key": "the routing_key", "project": "the project name"}.get(field or "", "it")
    return Conflict(f"{what} is taken (another request may have just created it)", field=field)


class Database:
    def __init__(self, url: str):
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            file = sqlite_path(url)
            if file is not None:
                _private_file(file)
                # Up to the API's worker threads at once, kept open: past SQLAlchemy's default
                # (5 + 10 overflow, closed on return) each burst opened new connections.
                kwargs["pool_size"], kwargs["max_overflow"] = 40, 24
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self, cipher: Any = None, to: str = "head") -> None:
        """Bring the schema to the latest migration (creates it on an empty database), or
        to the revision ``to``. ``cipher`` encrypts secrets that a migration moves into the store."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # several control planes starting at once: one migrates, the others wait
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            cfg.attributes["cipher"] = cipher
            command.upgrade(cfg, to)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any error."""
        s = self._sessions()
        try:
            yield s
            s.commit()
        except IntegrityError as e:
            s.rollback()
            raise conflict(e) from None
        except StaleDataError:
            s.rollback()
            raise NotFound("it was deleted by another request") from None
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def dispose(self) -> None:
        self.engine.dispose()


def _private_file(path: Path) -> None:
    """Create the database file owner-only before SQLite opens it: its WAL and shared
    memory files take the same mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chmod(path, 0o600)
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        if side.exists():
            os.chmod(side, 0o600)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the API read while a fire or the reconciler writes; synchronous=NORMAL
    # in WAL mode is still durable across a process crash (only an OS crash can lose
    # the last commits).
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
