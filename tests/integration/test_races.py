"""Racing clients against a real `rota server`, on SQLite and on PostgreSQL: one row per
name, and every lost race a 409 or a 404, never a 500."""

import threading

import httpx
import pytest

from support.postgres import Postgres
from support.procs import TEST_APPS, free_port


@pytest.fixture(scope="module")
def pg():
    p = Postgres().start()
    yield p
    p.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def srv(request, servers, tmp_path):
    env = {"ROTA_RAY_ADDRESS": f"http://127.0.0.1:{free_port()}", "ROTA_SERVE_APPS_PATH": str(TEST_APPS)}  # no Ray needed
    if request.param == "postgresql":
        env["ROTA_DATABASE_URL"] = request.getfixturevalue("pg").url
    return servers(tmp_path / request.param, **env)


def race(n: int, call) -> list[int]:
    codes, barrier = [], threading.Barrier(n)

    def run(i):
        barrier.wait()
        codes.append(call(i).status_code)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sorted(codes)


def test_racing_clients_get_one_row_and_409s_or_404s(srv):
    headers = {"Authorization": f"Bearer {srv.admin_key}"}
    task = {
        "file_path": "echo",
        "deployment_name": "app",
        "type": "daily",
        "timezone": "UTC",
        "schedule": [{"time": "09:00", "min_replicas": 1, "max_replicas": 1}],
    }
    with httpx.Client(base_url=srv.url + "/api/v1", headers=headers, timeout=30) as c:
        codes = race(6, lambda i: c.post("/tasks", json={"name": "same", **task}))
        assert codes == [201] + [409] * 5, codes
        assert c.get("/tasks", params={"search": "same"}).json()["total"] == 1
        assert len([e for e in c.get("/endpoints").json()["items"] if e["name"] == "same"]) == 1

        c.post("/tasks", json={"name": "doomed", **task}).raise_for_status()
        codes = race(
            6,
            lambda i: (
                c.delete("/tasks/doomed")
                if i < 2
                else c.patch("/tasks/doomed", json={"schedule": [{"time": f"1{i}:00", "min_replicas": 1, "max_replicas": 1}]})
                if i < 4
                else c.post("/tasks/doomed/activate")
            ),
        )
        assert all(code in (200, 204, 404, 409) for code in codes), codes
        assert c.get("/tasks/doomed").status_code == 404
