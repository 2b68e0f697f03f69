"""Unit tier: real SQLite in a temp dir, real schedule math, an in-memory Ray Serve."""

import os
import shutil
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from rota.api.app import create_app
from rota.config import Settings
from rota.runtime import Runtime
from support.endpoints import TEST_TEMPLATES
from support.fake_ray import FakeLogs, FakeRay
from support.leading import lead
from support.procs import REPO, TEST_APPS


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw) -> datetime:
        self.now += timedelta(**kw)
        return self.now


def unit_settings(home) -> Settings:
    apps = os.pathsep.join([str(REPO / "serve_apps"), str(TEST_APPS)])
    return Settings(home=home, serve_apps_path=apps, ray_address="http://127.0.0.1:9", templates_path=TEST_TEMPLATES)


@pytest.fixture
def settings(tmp_path):
    return unit_settings(tmp_path)


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory):
    """An empty SQLite store at the latest migration, made once: each test's store starts
    as a copy of it (running every migration takes a tenth of a second, a copy a hundredth)."""
    home = tmp_path_factory.mktemp("migrated-store")
    r = Runtime(unit_settings(home), ray=FakeRay())
    r.db.migrate(r.cipher)
    r.db.dispose()
    return home / "rota.db"


@pytest.fixture
def clock():
    return Clock(datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc))


@pytest.fixture
def ray():
    return FakeRay()


@pytest.fixture
def ray_logs():
    return FakeLogs()


@pytest.fixture
def rt(settings, ray, clock, ray_logs, migrated_store):
    """The control plane's parts on real SQLite and the in-memory Ray, with the clock
    injected; no loop runs (tests tick the reconciler and fire tasks themselves)."""
    if settings.database_url is None:
        store = settings.home / "rota.db"
        shutil.copyfile(migrated_store, store)
        store.chmod(0o600)
    r = Runtime(settings, ray=ray, ray_logs=ray_logs)
    for part in (r.tasks, r.endpoints, r.auth, r.reconciler, r.scheduler, r.cluster, r.suggestions):
        part.clock = clock
    r.invocations.clock = r.async_queue.clock = r.dispatcher.clock = r.webhook_secrets.clock = lambda: clock().timestamp()
    r.db.migrate(r.cipher)
    r.auth.bootstrap(settings.admin_key_path)
    lead(r)
    yield r
    r.leadership.stop()
    r.db.dispose()


@pytest.fixture
def admin(rt, settings):
    return rt.auth.authenticate(f"Bearer {settings.admin_key_path.read_text()}")


@pytest.fixture
def db(rt):
    return rt.db


@pytest.fixture
def reconciler(rt):
    return rt.reconciler


@pytest.fixture
def client(rt, settings):
    """The REST API as a user calls it, with the admin key."""
    with TestClient(create_app(settings, rt)) as c:
        rt.reconciler.stop()  # the tests tick it themselves: each step is deterministic
        rt.scheduler.shutdown()
        rt.dispatcher.stop()  # sends are driven by the tests too
        c.rt = rt
        c.headers["Authorization"] = f"Bearer {settings.admin_key_path.read_text()}"
        yield c
