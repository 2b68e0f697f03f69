"""End-to-end tier: real vLLM on the CPU behind Rota's route, through a task.

One Rota server and one engine serve the whole package (engine starts are the slow
part); the server is stopped when the package is done so no two control planes ever
manage the session's Ray cluster at once.
"""

import tempfile
from pathlib import Path

import pytest

from rota.models.tiny import make_tiny
from support.procs import RotaServer
from support.tasks import local_in, wait_task, zone_near_noon

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def tiny_model():
    return make_tiny(Path(tempfile.mkdtemp(prefix="rota-tiny-", dir="/tmp")) / "tiny")


@pytest.fixture(scope="package")
def llm(cluster, tiny_model):
    home = Path(tempfile.mkdtemp(prefix="rota-e2e-", dir="/tmp"))
    srv = RotaServer(home, cluster.server_env()).start()
    tz = zone_near_noon()
    body = {
        "name": "tiny-llm", "file_path": "serve", "deployment_name": "app", "type": "one_off", "timezone": tz,
        "schedule": [{"time": local_in(tz, 2).strftime("%Y-%m-%dT%H:%M:%S"), "min_replicas": 1, "max_replicas": 1}],
        "args": {"model": str(tiny_model), "served_model_name": "tiny", "max_model_len": 256, "max_input_length": 64},
        "resources": {"num_cpus": 1},
    }  # fmt: skip
    r = srv.api.post("/tasks", json=body)
    assert r.status_code == 201, r.text
    srv.api.post("/tasks/tiny-llm/activate").raise_for_status()
    wait_task(srv, "tiny-llm", lambda t: t["app"]["status"] == "RUNNING" or t["status"] == "failed", timeout=300, what="vLLM up")
    task = srv.api.get("/tasks/tiny-llm").json()
    assert task["app"]["status"] == "RUNNING", task
    srv.base_url = f"{cluster.serve_url}/tiny-llm/v1"
    yield srv
    srv.stop()
