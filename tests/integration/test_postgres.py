"""The store on PostgreSQL: the same exactly-once and reconcile guarantees as on SQLite."""

import threading
from datetime import datetime, timedelta, timezone

import pytest
from rota.config import Settings
from rota.domain.models import TaskCreate
from rota.reconciler.loop import Reconciler
from rota.services.fires import process_due
from rota.services.tasks import TaskService
from rota.store.db import Database
from rota.store.tables import RunRow
from sqlalchemy import func, select
from support.fake_ray import FakeRay
from support.postgres import Postgres
from support.procs import TEST_APPS


@pytest.fixture(scope="module")
def pg():
    p = Postgres().start()
    yield p
    p.stop()


def test_fires_exactly_once_and_reconcile_on_postgres(pg, tmp_path):
    db = Database(pg.url)
    db.migrate()
    now = [datetime(2026, 11, 23, 7, 0, tzinfo=timezone.utc)]
    settings = Settings(home=tmp_path, serve_apps_path=str(TEST_APPS), ray_address="http://127.0.0.1:9", database_url=pg.url)
    svc = TaskService(db, settings, clock=lambda: now[0])
    body = {
        "name": "pg-day", "file_path": "echo", "deployment_name": "app", "type": "daily", "timezone": "Europe/Paris",
        "schedule": [{"time": "09:00", "min_replicas": 1, "max_replicas": 1}, {"time": "18:00", "min_replicas": 2, "max_replicas": 2}],
    }  # fmt: skip
    t = svc.activate(svc.create(TaskCreate.model_validate(body)).id)
    assert t.next_fire_at == datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)  # 09:00 Paris (UTC+1)
    now[0] = t.next_fire_at
    results = []
    threads = [threading.Thread(target=lambda: results.append(process_due(db, t.id, now[0], "schedule", timedelta(hours=1)))) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(r.applied is not None for r in results) == 1
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(RunRow)) == 1
    ray = FakeRay()
    Reconciler(db, ray, clock=lambda: now[0]).tick()
    got = svc.get(t.id)
    assert got.app.status.value == "RUNNING" and got.created_at.tzinfo is not None
    assert [e.kind for e in svc.events(t.id)] == ["created", "activated", "fired", "deploying", "running"]
    db.dispose()
