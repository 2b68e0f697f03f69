"""Rota pointed at a Ray cluster it did not start: a head brought up with `ray start --head`
by its operator, on this host's network address (not loopback), with its own auth token,
and a second node joined with `ray start --address` that declares a GPU of type L4 (Ray
lets a node declare resources it does not have: here it stands in for a GPU node).

Nothing is configured beyond what an operator must say (the dashboard address and the
token): where Serve listens, where the control plane reaches it and where the cluster
reaches the control plane all come from the defaults, as on a KubeRay head service.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from rota.config import Settings
from rota.domain.specs import GATEWAY_APP
from rota.serve.cluster import MARKER, LocalRayHead, dashboard_up
from support.endpoints import TEST_TEMPLATES, chat, status_is, wait_endpoint
from support.procs import REPO, TEST_APPS, RotaServer, free_port, wait_until

APPS = os.pathsep.join([str(REPO / "serve_apps"), str(TEST_APPS)])


def own_address() -> str:
    """This host's address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("203.0.113.1", 9))
        address = probe.getsockname()[0]
    assert address != "127.0.0.1", "this test needs a network address besides loopback"
    return address


@dataclass
class Head:
    url: str
    token: Path
    ip: str
    gcs: int
    env: dict
    logs: Path

    def join(self, *args: str) -> None:
        """`ray start --address` on this host: another node of the cluster (every port its
        own, as a second node on one machine needs); stopped with the head."""
        ports = ("--node-manager-port", "--object-manager-port", "--metrics-export-port")
        ports += ("--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port")
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--address", f"{self.ip}:{self.gcs}", "--block"]
        cmd += ["--node-ip-address", self.ip, "--min-worker-port", "0", "--max-worker-port", "0", "--disable-usage-stats"]
        cmd += [a for port in ports for a in (port, str(free_port()))]
        with open(self.logs / "worker.log", "ab") as log:
            subprocess.Popen([*cmd, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def nodes(self) -> list[dict]:
        r = httpx.get(f"{self.url}/api/v0/nodes", headers=self.auth, params={"detail": "true"}, timeout=10)
        return r.json()["data"]["result"]["result"]

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token.read_text()}"}


@pytest.fixture
def remote_head(tmp_path):
    """`ray start --head` as an operator runs it; stopped (every process of it) afterwards."""
    ip, dashboard, gcs = own_address(), free_port(), free_port()
    token = tmp_path / "operator-token"
    token.write_text(secrets.token_hex(32))
    cluster_id = uuid.uuid4().hex
    temp = tempfile.mkdtemp(prefix="rota-rh-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROTA_", "RAY_AUTH"))}
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token),
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONPATH=APPS,
        **{MARKER: cluster_id},  # lets the cleanup find every process of this cluster
    )
    cmd = [
        *(sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block"),
        *("--node-ip-address", ip, "--dashboard-host", ip, "--dashboard-port", str(dashboard)),
        *("--port", str(gcs), "--ray-client-server-port", str(free_port())),
        *("--dashboard-agent-listen-port", str(free_port()), "--min-worker-port", "0", "--max-worker-port", "0"),
        *("--temp-dir", temp, "--num-cpus", "2", "--disable-usage-stats"),
    ]
    with open(tmp_path / "head.log", "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    # Stopped the way Rota stops a head of its own: the process group, then anything
    # still carrying the cluster's marker.
    stopper = LocalRayHead(Settings(home=tmp_path / "stopper"))
    stopper.pid_file.parent.mkdir(parents=True)
    stopper.pid_file.write_text(json.dumps({"pid": proc.pid, "cluster_id": cluster_id}))
    url = f"http://{ip}:{dashboard}"

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
        return dashboard_up(url, token.read_text())

    try:
        wait_until(up, 120, what="the operator's Ray head")
        yield Head(url, token, ip, gcs, env, tmp_path)
    finally:
        stopper.stop()
        shutil.rmtree(temp, ignore_errors=True)


def test_a_cluster_started_by_its_operator_serves_endpoints_on_the_nodes_their_gpu_type_names(remote_head, tmp_path):
    head = remote_head
    url, token = head.url, head.token
    head.join("--num-cpus", "1", "--num-gpus", "1", "--resources", json.dumps({"accelerator_type:L4": 1}))
    catalog = yaml.safe_load(TEST_TEMPLATES.read_text())  # echo-chat, and the same app on an L4
    gpu = {**catalog["templates"][0], "name": "echo-l4", "gpu_types": ["L4"], "gpu_counts": [1]}
    gpu["defaults"] = {**gpu["defaults"], "gpu_type": "L4", "gpu_count": 1}
    catalog["templates"].append(gpu)
    (tmp_path / "templates.yaml").write_text(yaml.safe_dump(catalog))
    assert not dashboard_up(url, "not-its-token")  # its API is closed without the token
    serve_port = free_port()
    srv = RotaServer(
        tmp_path / "rota",
        {
            "ROTA_RAY_ADDRESS": url,
            "ROTA_RAY_AUTH_TOKEN_PATH": str(token),
            "ROTA_SERVE_PORT": str(serve_port),
            "ROTA_HOST": "0.0.0.0",  # the cluster reaches the control plane at this host's address
            "ROTA_TEMPLATES_PATH": str(tmp_path / "templates.yaml"),
            "ROTA_SERVE_APPS_PATH": APPS,  # the scripts the cluster's nodes have
        },
    )
    try:
        srv.start()
        r = srv.api.post("/endpoints", json={"name": "far", "template": "echo-chat", "routing_key": "far"})
        assert r.status_code == 201, r.text
        ep = wait_endpoint(srv, "far", status_is("RUNNING"), timeout=180, what="RUNNING on the operator's cluster")
        ip = url.split("//")[1].split(":")[0]
        assert ep["base_url"] == f"http://{ip}:{serve_port}/v1"  # the head's address, not loopback
        r = chat(ep["base_url"].removesuffix("/v1"), srv.admin_key, "far", "over there")
        assert r.status_code == 200, r.text
        assert "over there" in r.json()["choices"][0]["message"]["content"]
        assert httpx.get(f"{ep['base_url']}/models", timeout=10).status_code == 401  # the base URL wants a key
        # The gateway was told this host's network address, not a loopback that only works
        # because the head happens to run on the same machine here.
        apps = httpx.get(f"{url}/api/serve/applications/", headers={"Authorization": f"Bearer {token.read_text()}"}, timeout=10)
        args = apps.json()["applications"][GATEWAY_APP]["deployed_app_config"]["args"]
        assert args["control_url"] == f"http://{ip}:{srv.port}"

        # An endpoint whose GPU type is L4 runs its replica on the node that has one; the
        # base URL still answers at the head.
        (l4,) = wait_until(lambda: [n for n in head.nodes() if "accelerator_type:L4" in n["resources_total"]], 60)
        r = srv.api.post("/endpoints", json={"name": "l4", "template": "echo-l4", "routing_key": "l4"})
        assert r.status_code == 201, r.text
        wait_endpoint(srv, "l4", status_is("RUNNING"), timeout=180, what="RUNNING on the L4 node")
        apps = httpx.get(f"{url}/api/serve/applications/", headers=head.auth, timeout=10).json()["applications"]
        prefix = urlsplit(srv.api.get("/endpoints/l4").json()["url"]).path
        app = next(a for a in apps.values() if a.get("route_prefix") == prefix)
        replicas = [r for d in app["deployments"].values() for r in d["replicas"]]
        assert replicas and {r["node_id"] for r in replicas} == {l4["node_id"]}, (replicas, l4)
        options = next(iter(app["deployed_app_config"]["deployments"]))["ray_actor_options"]
        assert (options["num_gpus"], options["accelerator_type"]) == (1, "L4")
        r = chat(ep["base_url"].removesuffix("/v1"), srv.admin_key, "l4", "on the L4 node")
        assert r.status_code == 200 and "on the L4 node" in r.json()["choices"][0]["message"]["content"], r.text
    finally:
        srv.kill()
