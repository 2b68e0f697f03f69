"""The store on PostgreSQL: the same exactly-once, reconcile and race guarantees as on SQLite."""

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from rota.config import Settings
from rota.domain.endpoints import EndpointCreate, EndpointUpdate
from rota.domain.errors import Conflict, NotFound
from rota.domain.tasks import TaskCreate
from rota.runtime import Runtime
from rota.services.fires import process_due
from rota.store.tables import RunRow
from support.endpoints import TEST_TEMPLATES
from support.fake_ray import FakeRay
from support.leading import lead
from support.postgres import Postgres
from support.procs import TEST_APPS


@pytest.fixture(scope="module")
def pg():
    p = Postgres().start()
    yield p
    p.stop()


@pytest.fixture
def rt(pg, tmp_path):
    s = Settings(
        home=tmp_path,
        serve_apps_path=str(TEST_APPS),
        ray_address="http://127.0.0.1:9",
        database_url=pg.url,
        templates_path=TEST_TEMPLATES,
    )
    r = Runtime(s, ray=FakeRay())
    r.db.migrate(r.cipher)
    r.admin = r.auth.authenticate(f"Bearer {r.auth.mint_admin(s.admin_key_path, 'test').key}")
    lead(r, scheduler=False)  # the tests fire by hand
    yield r
    r.leadership.stop()
    r.db.dispose()


def parallel(n, fn):
    out = []

    def run():
        try:
            out.append(fn())
        except Exception as e:
            out.append(e)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return out


def test_fires_exactly_once_and_reconcile_on_postgres(rt):
    now = [datetime(2026, 11, 23, 7, 0, tzinfo=timezone.utc)]
    rt.tasks.clock = lambda: now[0]
    body = {
        "name": "pg-day",
        "file_path": "echo",
        "deployment_name": "app",
        "type": "daily",
        "timezone": "Europe/Paris",
        "schedule": [
            {"time": "09:00", "min_replicas": 1, "max_replicas": 1},
            {"time": "18:00", "min_replicas": 2, "max_replicas": 2},
        ],
    }
    t = rt.tasks.activate(rt.admin, rt.tasks.create(rt.admin, TaskCreate.model_validate(body)).id)
    assert t.next_fire_at == datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)  # 09:00 Paris (UTC+1)
    now[0] = t.next_fire_at
    results = parallel(8, lambda: process_due(rt.db, t.id, now[0], "schedule", timedelta(hours=1)))
    assert sum(r.applied is not None for r in results) == 1
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(RunRow)) == 1
    rt.reconciler.tick()
    got = rt.tasks.get(rt.admin, t.id)
    assert got.endpoint.status.value == "RUNNING" and got.created_at.tzinfo is not None
    assert [e.kind.value for e in rt.events.list(rt.admin, task_id=t.id)] == ["created", "activated", "fired"]


def test_races_are_409s_and_404s_never_500s_on_postgres(rt):
    make = lambda: rt.endpoints.create(rt.admin, EndpointCreate(name="dup", template="echo-chat", routing_key="dup"))
    out = parallel(6, make)
    assert sum(not isinstance(o, Exception) for o in out) == 1
    assert all(isinstance(o, Conflict) and o.field == "name" for o in out if isinstance(o, Exception)), out
    rt.endpoints.create(rt.admin, EndpointCreate(name="gone", template="echo-chat"))
    out = parallel(2, lambda: rt.endpoints.delete(rt.admin, "gone")) + parallel(
        4, lambda: rt.endpoints.update(rt.admin, "gone", EndpointUpdate.model_validate({"scaling": {"replicas": 1}}))
    )
    assert all(o is None or isinstance(o, (NotFound, Conflict)) or hasattr(o, "id") for o in out), out
