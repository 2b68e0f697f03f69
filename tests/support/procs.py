"""Processes the tests start: free ports, a `rota server` subprocess, and cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from rota.serve.cluster import free_port as _free_port

REPO = Path(__file__).resolve().parents[2]
TEST_APPS = REPO / "tests" / "apps"


def free_port() -> int:
    """A free port outside the kernel's ephemeral range (see rota.serve.cluster.free_port)."""
    return _free_port()


def embedded_env(home: Path, test_apps: bool = False, **extra: str) -> dict[str, str]:
    """``rota server`` on an embedded Ray head of its own: every port free, every path under
    ``home``; ``test_apps``: with the engine-less test applications and their templates."""
    env = {
        "ROTA_RAY_ADDRESS": "",
        "ROTA_SERVE_PORT": str(free_port()),
        "ROTA_RAY_DASHBOARD_PORT": str(free_port()),
        "ROTA_RAY_GCS_PORT": str(free_port()),
        "ROTA_RAY_CLIENT_SERVER_PORT": str(free_port()),
        "ROTA_RAY_DASHBOARD_AGENT_PORT": str(free_port()),
        "ROTA_RAY_TEMP_DIR": str(home / "ray"),
    }
    if test_apps:
        env["ROTA_SERVE_APPS_PATH"] = os.pathsep.join([str(REPO / "serve_apps"), str(TEST_APPS)])
        env["ROTA_TEMPLATES_PATH"] = str(TEST_APPS / "templates.yaml")
    return {**env, **extra}


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # keep polling through transient errors
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


class RotaServer:
    """`rota server` as a real subprocess (so it can be SIGKILLed and restarted)."""

    def __init__(self, home: Path, env: dict[str, str]):
        self.home = home
        self.port = int(env.get("ROTA_PORT") or free_port())  # a restart may keep its port
        self.env = {
            **os.environ,
            "ROTA_HOME": str(home),
            "ROTA_PORT": str(self.port),
            "ROTA_RECONCILE_INTERVAL_S": "0.5",
            "ROTA_SWEEP_INTERVAL_S": "2",
            "ROTA_LOG_LEVEL": "INFO",
            **env,
        }
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = httpx.Client(base_url=self.url + "/api/v1", timeout=30)

    def start(self, timeout: float = 60) -> RotaServer:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "server.log", "ab") as log:  # the child keeps its own handle
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rota", "server"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_until(self._healthy, timeout, what=f"rota server on {self.url}")
        self.api.headers["Authorization"] = f"Bearer {self.admin_key}"
        return self

    @property
    def admin_key(self) -> str:
        """The first admin key, written by the server at start (ROTA_HOME/admin_key)."""
        return (self.home / "admin_key").read_text().strip()

    @property
    def gateway_token(self) -> str:
        """The gateway's token, as the server derives it from its secret key."""
        from rota.crypto import Cipher

        key = self.env.get("ROTA_SECRET_KEY")
        return Cipher.load(key, self.home / "secret_key").derive("internal-token")

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"rota server exited {self.proc.returncode}: {self.log_tail()}")
        try:
            return httpx.get(self.url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def health(self) -> dict:
        """Ray reachability and the loops (the admin's view of /api/v1/status)."""
        return httpx.get(self.url + "/api/v1/status", headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=5).json()

    def log_tail(self, n: int = 4000) -> str:
        try:
            return (self.home / "server.log").read_text()[-n:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 60) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def rota(srv, *args, check=True, **env):
    """``rota --api-url <srv> ARGS`` as a user runs it; fails the test unless it succeeds (``check``)."""
    # As on the machine running the server: the CLI finds the admin key in ROTA_HOME.
    env = {**os.environ, "ROTA_HOME": str(srv.home), **env}
    p = subprocess.run(
        [sys.executable, "-m", "rota", "--api-url", srv.url, *args], capture_output=True, text=True, timeout=60, env=env
    )
    if check and p.returncode != 0:
        raise AssertionError(f"rota {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p
