"""The test session's real local Ray cluster, started through Rota's own LocalRayHead."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from rota.config import Settings
from rota.domain.specs import GATEWAY_APP
from rota.serve.cluster import LocalRayHead
from support.procs import REPO, TEST_APPS, free_port


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
            # A stopping replica is held reachable 3 s, not 10: the session waits for many
            # stops, and HAProxy on this one node drops a replica within a second of the
            # reload (then retries another on a refused connection).
            serve_drain_s=3,
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

    def gateway_replicas(self) -> dict[str, int]:
        """Rota's gateway's RUNNING replicas: replica id -> pid."""
        gw = self.applications().get(GATEWAY_APP, {}).get("deployments", {}).get("Gateway", {})
        return {r["replica_id"]: r["pid"] for r in gw.get("replicas", []) if r["state"] == "RUNNING"}

    def server_env(self) -> dict[str, str]:
        return {
            "ROTA_RAY_ADDRESS": self.dashboard_url,
            "ROTA_RAY_AUTH_TOKEN_PATH": str(self.settings.token_path),
            "ROTA_SERVE_PORT": str(self.settings.serve_port),
            "ROTA_SERVE_HOST": "127.0.0.1",  # the session cluster listens on loopback only
            "ROTA_SERVE_APPS_PATH": self.settings.serve_apps_path,
            # The session's cluster is the tests' own: what an earlier test's server left is removed.
            "ROTA_RAY_OWN_CLUSTER": "true",
        }

    def ray_env(self) -> dict[str, str]:
        """What a Ray driver or Ray's CLI needs to reach this cluster."""
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("ROTA_")},
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.settings.token_path),
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "PYTHONPATH": self.settings.serve_apps_path,
        }

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.settings.ray_gcs_port}"
