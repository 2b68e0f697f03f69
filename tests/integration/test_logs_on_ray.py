"""An endpoint's replica logs read from a real Ray cluster: what a replica prints shows,
tagged with its replica, in `rota endpoints logs` and as it happens with `-f`."""

import os
import subprocess
import sys
import uuid

import pytest

from support.endpoints import TEST_TEMPLATES, chat, status_is, wait_endpoint, wait_routed
from support.procs import wait_until

pytestmark = pytest.mark.integration


@pytest.mark.timeout(180)
def test_what_a_replica_prints_is_in_its_endpoints_logs_and_followed(servers, cluster):
    srv = servers(ROTA_TEMPLATES_PATH=str(TEST_TEMPLATES))
    r = srv.api.post("/endpoints", json={"name": "talky", "template": "echo-chat", "routing_key": "talky"})
    assert r.status_code == 201, r.text
    ep = wait_endpoint(srv, "talky", status_is("RUNNING"), what="RUNNING")
    replica = ep["replicas"]["ids"][0]
    first = f"first-{uuid.uuid4().hex[:8]}"
    wait_routed(cluster.serve_url, srv.admin_key, "talky", print=first)

    def printed(marker):
        lines = srv.api.get("/endpoints/talky/logs", params={"search": marker}).json()["lines"]
        return [ln for ln in lines if ln["stream"] == "out"]

    (line,) = wait_until(lambda: printed(first), 30, what="the printed line in the logs")
    assert line["replica"] == replica and line["line"] == f"echo replica {replica} printed: {first}"
    serve_lines = srv.api.get("/endpoints/talky/logs", params={"search": "POST /ep/"}).json()["lines"]
    assert serve_lines and serve_lines[-1]["stream"] == "err" and serve_lines[-1]["level"] == "INFO"

    later = f"later-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "ROTA_HOME": str(srv.home)}
    cmd = [sys.executable, "-m", "rota", "--api-url", srv.url, "endpoints", "logs", "talky", "-f", "--search", "printed"]
    follower = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert first in follower.stdout.readline()  # the tail first
        chat(cluster.serve_url, srv.admin_key, "talky", print=later).raise_for_status()
        assert follower.stdout.readline().strip() == f"[{replica} out] echo replica {replica} printed: {later}"
    finally:
        follower.kill()
        follower.wait(10)
