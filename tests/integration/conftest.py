"""Integration tier: one real local Ray cluster for the whole session, real SQLite files,
`rota server` as a real subprocess (so it can be killed and restarted)."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import pytz

from rota.config import Settings
from rota.serve.cluster import LocalRayHead
from support.procs import REPO, TEST_APPS, RotaServer, free_port, wait_until

pytestmark = pytest.mark.integration


class Cluster:
    def __init__(self, root: Path):
        self.settings = Settings(
            home=root / "ray-home",
            ray_dashboard_port=free_port(),
            ray_gcs_port=free_port(),
            ray_client_server_port=free_port(),
            ray_dashboard_agent_port=free_port(),
            ray_temp_dir=root / "ray",
            serve_port=free_port(),
            serve_apps_path=os.pathsep.join([str(REPO / "serve_apps"), str(TEST_APPS)]),
            ray_num_cpus=4,
        )
        self.head = LocalRayHead(self.settings)

    @property
    def dashboard_url(self) -> str:
        return self.settings.dashboard_url

    @property
    def serve_url(self) -> str:
        return self.settings.serve_url

    def start(self):
        self.head.start()

    def stop(self):
        self.head.stop()

    def applications(self) -> dict:
        r = httpx.get(
            self.dashboard_url + "/api/serve/applications/",
            headers={"Authorization": f"Bearer {self.settings.ray_token()}"},
            timeout=10,
        )
        r.raise_for_status()
        return r.json()["applications"]

    def server_env(self) -> dict[str, str]:
        return {
            "ROTA_RAY_ADDRESS": self.dashboard_url,
            "ROTA_RAY_AUTH_TOKEN_PATH": str(self.settings.token_path),
            "ROTA_SERVE_PORT": str(self.settings.serve_port),
            "ROTA_SERVE_APPS_PATH": self.settings.serve_apps_path,
        }


@pytest.fixture(scope="session")
def cluster():
    # Ray's socket paths must stay short: a /tmp root, not pytest's deep tmp dirs.
    root = Path(tempfile.mkdtemp(prefix="rota-it-", dir="/tmp"))
    c = Cluster(root)
    c.start()
    yield c
    c.stop()


@pytest.fixture
def servers(cluster, tmp_path):
    """Start `rota server`s against the session cluster; all are stopped afterwards."""
    started: list[RotaServer] = []

    def make(home: Path | None = None, **env) -> RotaServer:
        s = RotaServer(home or tmp_path / "rota", {**cluster.server_env(), **env})
        started.append(s)
        return s.start()

    yield make
    for s in started:
        s.kill()


def zone_near_noon() -> str:
    """A fixed-offset zone where it is around noon now, so "in a few seconds" stays today."""
    utc_hour = datetime.now(timezone.utc).hour
    offset = (12 - utc_hour + 12) % 24 - 12  # local = utc + offset, in [-12, 11]
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")  # Etc/GMT-3 is UTC+3


def local_in(tz: str, seconds: float) -> datetime:
    return datetime.now(timezone.utc).astimezone(pytz.timezone(tz)) + timedelta(seconds=seconds)


def hms(dt: datetime) -> str:
    return dt.strftime("%H:%M:%S")


def task_body(name: str, type_: str, tz: str, schedule: list[dict], **kw) -> dict:
    return {"name": name, "file_path": "echo", "deployment_name": "app", "type": type_, "timezone": tz, "schedule": schedule,
            "resources": {"num_cpus": 0.1}, **kw}  # fmt: skip


def wait_task(server: RotaServer, ref, predicate, timeout: float = 90, what: str = "task state"):
    def check():
        t = server.api.get(f"/tasks/{ref}").json()
        return t if predicate(t) else None

    try:
        return wait_until(check, timeout, interval=0.3, what=what)
    except AssertionError:
        print(server.log_tail())
        print(server.api.get(f"/tasks/{ref}/events").json())
        raise


def kinds(server: RotaServer, ref) -> list[str]:
    return [e["kind"] for e in server.api.get(f"/tasks/{ref}/events").json()]
