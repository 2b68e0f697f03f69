"""The embedded default: a local Ray head started (and owned) by Rota.

The head runs as ``ray start --head --block`` in its own process group, so that it
outlives a crash of the control plane (running applications keep serving) and a
restarted control plane adopts it instead of starting a second one. Unless
``ROTA_RAY_NODE_IP`` says otherwise, it is a single-node cluster whose every port
(control store, raylet, workers, agents, metrics) listens on loopback only. Every process of
the cluster carries ``ROTA_RAY_CLUSTER=<id>`` in its environment; ``stop`` uses it to
find workers that Ray re-parented, and so never touches another Ray on the machine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from rota.config import Settings
from rota.crypto import ensure_secret
from rota.serve import haproxy

log = logging.getLogger(__name__)

MARKER = "ROTA_RAY_CLUSTER"


def ensure_token(path: Path) -> str:
    """Rota's own Ray auth token for the embedded head, readable by the user only."""
    return ensure_secret(path)


def dashboard_up(url: str, token: str | None, timeout: float = 2.0) -> bool:
    try:
        r = httpx.get(
            url.rstrip("/") + "/api/serve/applications/",
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=timeout,
        )
        return r.status_code == 200
    except httpx.HTTPError:
        return False


class LocalRayHead:
    def __init__(self, settings: Settings, extra_pythonpath: list[Path] | None = None):
        self.s = settings
        self.extra_pythonpath = extra_pythonpath or []
        self.pid_file = settings.home / "ray_head.json"
        self.log_file = settings.home / "ray_head.log"

    @property
    def haproxy_dir(self) -> Path:
        return haproxy.files_dir(self.s.ray_dashboard_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.s.ray_dashboard_port}"

    def is_up(self) -> bool:
        return dashboard_up(self.url, self.s.ray_token())

    def command(self) -> list[str]:
        s = self.s
        cmd = [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            "--block",
            "--port",
            str(s.ray_gcs_port),
            "--dashboard-host",
            "127.0.0.1",
            "--dashboard-port",
            str(s.ray_dashboard_port),
            "--ray-client-server-port",
            str(s.ray_client_server_port),
            "--dashboard-agent-listen-port",
            str(s.ray_dashboard_agent_port),
            # Worker ports from the OS: Ray's default range (10002-19999) would clash
            # with any configured port inside it.
            "--min-worker-port",
            "0",
            "--max-worker-port",
            "0",
            "--temp-dir",
            str(s.resolved_ray_temp_dir),
            "--include-dashboard",
            "true",
            "--disable-usage-stats",
        ]
        if s.ray_num_cpus is not None:
            cmd += ["--num-cpus", str(s.ray_num_cpus)]
        if s.ray_quiet:
            cmd += ["--include-log-monitor", "false"]
        if s.ray_node_ip:
            cmd += ["--node-ip-address", s.ray_node_ip]
        return cmd

    def environment(self, cluster_id: str) -> dict[str, str]:
        """What every process of the head's cluster runs with."""
        pythonpath = [str(d) for d in (*self.s.serve_apps_dirs, *self.extra_pythonpath)]
        if os.environ.get("PYTHONPATH"):
            pythonpath.append(os.environ["PYTHONPATH"])
        env = {
            # Every Ray process inherits this: nothing of the control plane's own (its
            # secret key, database URL, API key) goes to the replicas.
            **{k: v for k, v in os.environ.items() if not k.startswith("ROTA_")},
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.s.token_path),
            "PYTHONPATH": os.pathsep.join(pythonpath),
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_worker_niceness": str(self.s.ray_worker_niceness),
            **({"RAY_enable_metrics_collection": "0"} if self.s.ray_quiet else {}),
            # Where its nodes generate the tiny model (serve_apps/_tiny_model.py).
            "ROTA_MODELS_DIR": str(self.s.home / "models"),
            MARKER: cluster_id,
        }
        if not self.s.ray_node_ip:
            # Ray's single-node mode: its node address is loopback, and every server
            # binds there (measured with `ss -ltnp`: nothing beyond 127.0.0.1).
            env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        env.pop("RAY_AUTH_TOKEN", None)
        env.update(self.ingress_env())
        return env

    def ingress_env(self) -> dict[str, str]:
        """Ray Serve ingress settings for the head (``haproxy.py``)."""
        return haproxy.ingress_env(self.s, free_port) if self.s.serve_ingress == "haproxy" else {}

    def start(self, timeout: float = 120.0) -> None:
        """Start the head, or adopt one this Rota home already runs; wait for its dashboard."""
        self.s.home.mkdir(parents=True, exist_ok=True)
        ensure_token(self.s.token_path)
        if self.is_up():
            if self.pid_file.exists():
                log.info("adopting the Ray head this home started, at %s", self.url)
            else:
                log.warning(
                    "a Ray head answers at %s but this home did not start it: using it, and it will not be stopped on shutdown",
                    self.url,
                )
            return
        cluster_id = uuid.uuid4().hex
        env = self.environment(cluster_id)
        log.info("starting a local Ray head: dashboard %s, Serve on %s", self.url, self.s.serve_url)
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                self.command(), env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.pid_file.write_text(json.dumps({"pid": proc.pid, "cluster_id": cluster_id}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {proc.returncode}; see {self.log_file}")
            if self.is_up():
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the Ray dashboard did not come up within {timeout:.0f}s; see {self.log_file}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the head this Rota home started, and every process of that cluster.

        SIGTERM first; Ray's own shutdown can take ~40 s on a small machine, so after
        ``timeout`` the group and any re-parented worker still carrying the marker get
        SIGKILL (the applications are going away either way).
        """
        try:
            info = json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return
        pid, cluster_id = info.get("pid"), info.get("cluster_id")
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _cluster_pids(cluster_id):
            time.sleep(0.5)
        _signal_group(pid, signal.SIGKILL)
        for p in _cluster_pids(cluster_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _cluster_pids(cluster_id):
            time.sleep(0.2)
        with contextlib.suppress(ChildProcessError, TypeError):
            os.waitpid(pid, os.WNOHANG)
        self.pid_file.unlink(missing_ok=True)
        shutil.rmtree(self.haproxy_dir, ignore_errors=True)


_handed_out: set[int] = set()


def free_port(low: int = 20000) -> int:
    """A free port below the kernel's ephemeral range, and never one this process handed
    out before. Ports picked now are bound later (by Ray, HAProxy, a server): two picks
    must not meet at one port, nor race Ray's own ports in the range bind(0) draws from."""
    import random
    import socket

    try:
        high = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]) - 1
    except (OSError, ValueError, IndexError):
        high = 32767
    high = max(high, low + 1000)
    for _ in range(200):
        port = random.randint(low, high)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {low}-{high}")


def _signal_group(pid: int | None, sig: int) -> None:
    if pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)


def _cluster_pids(cluster_id: str | None) -> list[int]:
    """Live processes whose environment carries this cluster's marker."""
    if not cluster_id:
        return []
    needle = f"{MARKER}={cluster_id}".encode()
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                stat = (entry / "stat").read_text()
                if ") Z" not in stat:  # a zombie is already dead
                    out.append(int(entry.name))
        except OSError:
            continue
    return out
