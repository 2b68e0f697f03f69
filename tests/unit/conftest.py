"""Unit tier: real SQLite in a temp dir, real schedule math, an in-memory Ray Serve."""

from datetime import datetime, timedelta, timezone

import pytest

from rota.config import Settings
from rota.reconciler.loop import Reconciler
from rota.services.tasks import TaskService
from rota.store.db import Database
from support.fake_ray import FakeRay
from support.procs import TEST_APPS


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw) -> datetime:
        self.now += timedelta(**kw)
        return self.now


@pytest.fixture
def settings(tmp_path):
    return Settings(home=tmp_path, serve_apps_path=str(TEST_APPS), ray_address="http://127.0.0.1:9")


@pytest.fixture
def clock():
    return Clock(datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc))


@pytest.fixture
def db(settings):
    d = Database(settings.resolved_database_url)
    d.migrate()
    yield d
    d.dispose()


@pytest.fixture
def ray():
    return FakeRay()


@pytest.fixture
def svc(db, settings, clock):
    return TaskService(db, settings, clock=clock)


@pytest.fixture
def reconciler(db, ray, clock):
    return Reconciler(db, ray, interval=0.1, clock=clock)
