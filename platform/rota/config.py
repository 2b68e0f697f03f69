"""Settings for every Rota process, read from ``ROTA_*`` environment variables.

One ``Settings`` object is built at start and passed down; nothing else reads the
environment. Every port and path is configurable so that tests (and several
instances on one machine) never collide.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SERVE_APPS = REPO_ROOT / "serve_apps"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROTA_", extra="ignore")

    # Control-plane API
    host: str = "127.0.0.1"
    port: int = 8080
    home: Path = Field(default_factory=lambda: Path("~/.rota").expanduser())
    database_url: str | None = None  # default: SQLite file under `home`

    # Ray. With `ray_address` unset Rota starts (and owns) an embedded local head.
    ray_address: str | None = None  # dashboard URL of an existing cluster, e.g. http://head:8265
    ray_auth_token: str | None = None
    ray_auth_token_path: Path | None = None
    ray_dashboard_port: int = 8265
    ray_gcs_port: int = 6379
    ray_client_server_port: int = 10001
    ray_dashboard_agent_port: int = 52365
    ray_num_cpus: int | None = None
    ray_temp_dir: Path | None = None  # default: /tmp/rota-ray-<dashboard port>

    # Ray Serve HTTP proxy (where the applications' routes are served)
    serve_host: str = "127.0.0.1"
    serve_port: int = 8000
    # Embedded head only: "haproxy" serves HTTP with Ray Serve's HAProxy ingress, which
    # forwards to each replica's own HTTP server; "proxy" uses Ray Serve's Python proxy.
    serve_ingress: Literal["haproxy", "proxy"] = "haproxy"
    # HAProxy's stats and metrics listeners; unset: free ports picked when the head starts.
    haproxy_stats_port: int | None = None
    haproxy_metrics_port: int | None = None
    # Folders whose scripts are Ray Serve applications, os.pathsep-separated.
    serve_apps_path: str = str(DEFAULT_SERVE_APPS)

    # Endpoints and the OpenAI base URL (the gateway application on the Serve port)
    templates_path: Path | None = None  # default: the catalog shipped in rota/catalog/templates.yaml
    max_replicas: int = Field(10, ge=1)  # per endpoint
    wake_timeout_s: float = Field(300.0, gt=0)  # a request to a sleeping endpoint waits this long, then 503
    gateway_refresh_s: float = Field(1.0, gt=0)  # routing table refresh (key revocation takes effect within it)
    # The control plane's URL as the cluster reaches it (the gateway pulls its routing table there).
    public_url: str | None = None

    # Loops
    reconcile_interval_s: float = 2.0
    sweep_interval_s: float = 15.0
    one_off_grace_s: float = 3600.0
    log_level: str = "INFO"

    @cached_property
    def serve_apps_dirs(self) -> list[Path]:
        return [Path(p).expanduser().resolve() for p in self.serve_apps_path.split(os.pathsep) if p]

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'rota.db'}"

    @property
    def embedded_ray(self) -> bool:
        return not self.ray_address

    @property
    def dashboard_url(self) -> str:
        if self.ray_address:
            return self.ray_address.rstrip("/")
        return f"http://127.0.0.1:{self.ray_dashboard_port}"

    @property
    def token_path(self) -> Path:
        """Where the Ray auth token lives: configured, else Rota's own for an embedded head."""
        if self.ray_auth_token_path:
            return self.ray_auth_token_path.expanduser()
        if self.embedded_ray:
            return self.home / "ray_auth_token"
        env = os.environ.get("RAY_AUTH_TOKEN_PATH")
        return Path(env) if env else Path.home() / ".ray" / "auth_token"

    @property
    def resolved_ray_temp_dir(self) -> Path:
        return self.ray_temp_dir or Path(f"/tmp/rota-ray-{self.ray_dashboard_port}")

    @property
    def serve_url(self) -> str:
        return f"http://{self.serve_host}:{self.serve_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def control_url(self) -> str:
        return (self.public_url or self.api_url).rstrip("/")

    @property
    def admin_key_path(self) -> Path:
        return self.home / "admin_key"

    @property
    def internal_token_path(self) -> Path:
        """Cluster-internal secret: the gateway reads the routing table and calls endpoints with it."""
        return self.home / "internal_token"

    def ray_token(self) -> str | None:
        if self.ray_auth_token:
            return self.ray_auth_token
        env = os.environ.get("RAY_AUTH_TOKEN")
        if env and not self.ray_auth_token_path:
            return env.strip()
        try:
            return self.token_path.read_text().strip() or None
        except OSError:
            return None
