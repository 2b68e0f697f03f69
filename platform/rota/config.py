"""Settings, read from ``ROTA_*`` environment variables.

``Settings`` is built once when the control plane starts and passed down; ``ClientSettings``
is what the CLI reads. Nothing else in Rota reads the environment for its own settings
(manifests may reference environment variables by design). Every port and path is
configurable so that tests, and several instances on one machine, never collide.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rota.addresses import address_toward, bracketed
from rota.domain.policy import Policy

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SERVE_APPS = REPO_ROOT / "serve_apps"
MIB = 1024 * 1024


def _home() -> Path:
    return Path("~/.rota").expanduser()


def _names(text: str) -> frozenset[str]:
    return frozenset(n.strip() for n in text.split(",") if n.strip())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROTA_", extra="ignore")

    # Control-plane API
    host: str = "127.0.0.1"
    port: int = 8080
    home: Path = Field(default_factory=_home)
    database_url: str | None = None  # default: SQLite file under `home`
    max_body_bytes: int = Field(1 * MIB, ge=1024)  # larger API request bodies get a 413
    secret_key: SecretStr | None = None  # encrypts secrets at rest; default: a key file under `home`

    # Ray. With `ray_address` unset Rota starts (and owns) an embedded local head.
    ray_address: str | None = None  # dashboard URL of an existing cluster, e.g. http://head:8265
    ray_auth_token: SecretStr | None = None
    ray_auth_token_path: Path | None = None
    # An existing cluster's token may also come from Ray's own variables.
    ray_env_token: SecretStr | None = Field(None, validation_alias=AliasChoices("RAY_AUTH_TOKEN"))
    ray_env_token_path: Path | None = Field(None, validation_alias=AliasChoices("RAY_AUTH_TOKEN_PATH"))
    ray_dashboard_port: int = 8265
    ray_gcs_port: int = 6379
    ray_client_server_port: int = 10001
    ray_dashboard_agent_port: int = 52365
    # True: applications on the cluster that Rota did not deploy are removed at its next
    # PUT. Default: true for the embedded head (Rota's alone), false for ray_address.
    ray_own_cluster: bool | None = None
    ray_num_cpus: int | None = None
    # Embedded head: the niceness of Ray's worker processes (replicas, their engines, the
    # gateway); Ray's own default. Measured on 2 cores (docs/performance.md): at 0 the
    # replicas compete with the client and Ray's daemons, TTFT p50 at concurrency 1 went
    # from +3 ms to +30 ms over bare vLLM and tokens/s at 8 from 0.92x to 0.67x.
    ray_worker_niceness: int = Field(15, ge=0, le=19)
    # Embedded head: leave out what Rota does not use and what costs every core a share
    # when idle: Ray's metrics export from every process (Rota has its own /metrics) and
    # the log monitor that streams logs to Ray drivers (Rota reads logs through the
    # dashboard's log API). Measured by bench/ray_idle.py.
    ray_quiet: bool = True
    ray_temp_dir: Path | None = None  # default: /tmp/rota-ray-<dashboard port>
    # Embedded head: unset, every Ray port listens on loopback only (a single-node
    # cluster); an address here makes it listen there so that workers can join.
    ray_node_ip: str | None = None

    # Ray Serve HTTP ingress (where the applications' routes are served). `serve_host` is
    # where it listens (default: loopback for the embedded head, every interface on an
    # existing cluster); `serve_address` is where the control plane reaches it and what
    # callers are shown (default: the embedded head's loopback, else the host of
    # `ray_address`, e.g. a KubeRay head service).
    serve_host: str | None = None
    serve_port: int = 8000
    serve_address: str | None = None  # e.g. http://rota-head-svc:8000
    # Embedded head only: "haproxy" serves HTTP with Ray Serve's HAProxy ingress, which
    # forwards to each replica's own HTTP server; "proxy" uses Ray Serve's Python proxy.
    serve_ingress: Literal["haproxy", "proxy"] = "haproxy"
    haproxy_stats_port: int | None = None  # unset: free ports picked when the head starts
    haproxy_metrics_port: int | None = None
    # How long a stopping replica stays reachable behind HAProxy before it refuses new
    # connections (Ray's default, 30 s, is sized for external load balancers).
    serve_drain_s: float = Field(10.0, gt=0)
    # Folders whose scripts are Ray Serve applications, os.pathsep-separated.
    serve_apps_path: str = str(DEFAULT_SERVE_APPS)

    # Endpoints, the security policy and the OpenAI base URL (the gateway on the Serve port)
    templates_path: Path | None = None  # default: the catalog shipped in rota/catalog/templates.yaml
    max_replicas: int = Field(10, ge=1, le=10_000)  # per endpoint and per schedule entry
    max_endpoints: int = Field(100, ge=1)  # per project for ordinary keys, task applications included
    model_roots: str | None = None  # os.pathsep-separated; default: <home>/models
    allowed_env: str = ""  # comma-separated names (or PREFIX_*) ordinary keys may set besides the built-in ones
    allowed_engine_args: str = ""  # comma-separated vLLM flags ordinary keys may set besides the built-in ones
    wake_timeout_s: float = Field(300.0, gt=0)  # a request to a sleeping endpoint waits this long, then 503
    gateway_refresh_s: float = Field(1.0, gt=0)  # routing table refresh (key revocation takes effect within it)
    gateway_max_body_bytes: int = Field(16 * MIB, ge=1024)  # OpenAI request bodies (long prompts)
    gateway_project_max_inflight: int = Field(20_000, ge=1, le=1_000_000)  # one project's calls in flight at the base URL
    # The gateway's replicas (autoscaled on requests in flight); an endpoint's limit holds across all.
    gateway_min_replicas: int = Field(1, ge=1, le=100)
    gateway_max_replicas: int = Field(1, ge=1, le=100)
    gateway_target_ongoing: int = Field(64, ge=1)  # requests in flight per gateway replica before one is added
    public_url: str | None = None  # the control plane's URL as the cluster reaches it (the gateway's table)

    # Several control planes on one PostgreSQL: the one holding the store's lease (renewed
    # every ``leader_renew_s``) runs the loops; a standby takes over once it lapses.
    leader_lease_s: float = Field(15.0, gt=0, le=600)
    leader_renew_s: float = Field(5.0, gt=0, le=300)
    # How /healthz names this process; default host:pid:random.
    instance_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$")

    prices_path: Path | None = None  # the price book (USD per GPU- or vCPU-hour); unset: catalog/prices.yaml
    # Request logs (false: none kept), kept this many days unless a project says otherwise.
    request_log: bool = True
    request_log_retention_days: int = Field(30, ge=1, le=3650)
    request_log_prune_interval_s: float = Field(3600.0, gt=0)
    request_content_max_bytes: int = Field(16_384, ge=0, le=65_536)  # per prompt or answer, with content logging on

    # Monitoring: a Prometheus that scrapes this control plane's /metrics (PromQL; else the store).
    prometheus_url: str | None = Field(None, pattern=r"^https?://[^\s]+$")
    prometheus_token_path: Path | None = None  # a bearer token for it, read at each query
    prometheus_timeout_s: float = Field(5.0, gt=0, le=60)  # for all the queries of one series together
    prometheus_scrape_s: float = Field(15.0, gt=0, le=3600)  # its scrape interval of this control plane

    # Async invocations and batches (/v1/async, /v1/files, /v1/batches at the base URL)
    async_retention_days: int = Field(7, ge=1, le=365)  # requests, results and files are kept this long
    async_max_body_bytes: int = Field(20 * MIB, ge=1024)  # one async request
    async_max_file_bytes: int = Field(200 * MIB, ge=1024)  # one uploaded file (a batch's input)
    async_max_attempts: int = Field(3, ge=1, le=20)  # sends of one request (a 5xx or a broken answer counts)
    async_max_depth: int = Field(100_000, ge=1)  # requests queued per endpoint; beyond it a submit is a 429
    async_interval_s: float = Field(0.2, gt=0)  # the dispatcher looks for work this often
    async_timeout_s: float = Field(600.0, gt=0)  # one send; a request running longer is sent again
    async_reserve: float = Field(0.25, ge=0, lt=1)  # async work leaves this share of an endpoint's room to calls
    webhook_allow_private: bool = False  # webhooks to loopback and private addresses (tests, one-machine setups)

    # The web console (/console): a signed-in browser's session lasts this long.
    console_session_hours: float = Field(12.0, gt=0, le=24 * 30)

    # Loops
    reconcile_interval_s: float = 2.0
    sweep_interval_s: float = 15.0
    one_off_grace_s: float = 3600.0
    # ready_by entries fire early by the endpoint's p95 cold start plus this margin, at most
    # ready_by_max_lead_s; with no start measured, its template's cold_start_s or this default.
    ready_by_margin_s: float = Field(30.0, ge=0, le=3600)
    ready_by_max_lead_s: float = Field(3600.0, ge=0, le=86400)
    cold_start_default_s: float = Field(300.0, ge=0, le=86400)
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _gateway_bounds(self) -> Settings:
        if self.gateway_min_replicas > self.gateway_max_replicas:
            raise ValueError(
                f"ROTA_GATEWAY_MIN_REPLICAS ({self.gateway_min_replicas}) is above "
                f"ROTA_GATEWAY_MAX_REPLICAS ({self.gateway_max_replicas})"
            )
        if self.leader_lease_s < 2 * self.leader_renew_s + 1:  # a leader acts lease - renew after a renewal began
            raise ValueError(
                f"ROTA_LEADER_LEASE_S ({self.leader_lease_s}) must be at least twice ROTA_LEADER_RENEW_S "
                f"({self.leader_renew_s}) plus 1 s: a renewal that comes a little late must not depose the leader"
            )
        return self

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
    def owns_cluster(self) -> bool:
        return self.embedded_ray if self.ray_own_cluster is None else self.ray_own_cluster

    @property
    def dashboard_url(self) -> str:
        if self.ray_address:
            return self.ray_address.rstrip("/")
        return f"http://127.0.0.1:{self.ray_dashboard_port}"

    @property
    def token_path(self) -> Path:
        """Where the Ray auth token lives: configured, else Rota's own for an embedded
        head, else Ray's variable or its default file."""
        if self.ray_auth_token_path:
            return self.ray_auth_token_path.expanduser()
        if self.embedded_ray:
            return self.home / "ray_auth_token"
        return self.ray_env_token_path or Path.home() / ".ray" / "auth_token"

    def ray_token(self) -> str | None:
        if self.ray_auth_token:
            return self.ray_auth_token.get_secret_value()
        if not self.embedded_ray and self.ray_env_token and not self.ray_auth_token_path:
            return self.ray_env_token.get_secret_value().strip()
        try:
            return self.token_path.read_text().strip() or None
        except OSError:
            return None

    @property
    def resolved_ray_temp_dir(self) -> Path:
        return self.ray_temp_dir or Path(f"/tmp/rota-ray-{self.ray_dashboard_port}")

    @property
    def serve_listen_host(self) -> str:
        return self.serve_host or ("127.0.0.1" if self.embedded_ray else "0.0.0.0")

    @property
    def serve_url(self) -> str:
        """Where the control plane reaches Ray Serve's HTTP ingress (and callers, by default)."""
        if self.serve_address:
            return self.serve_address.rstrip("/")
        host = self.serve_listen_host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1" if self.embedded_ray else (urlsplit(self.dashboard_url).hostname or "127.0.0.1")
        return f"http://{bracketed(host)}:{self.serve_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def control_url(self) -> str:
        """Where the cluster (the gateway, starting replicas) reaches the control plane:
        ``public_url``, else the API's own address; listening on every interface, the
        address of this host that faces the Ray head (loopback for an embedded one)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            if self.embedded_ray:
                host = self.ray_node_ip or "127.0.0.1"  # workers that joined the head reach it there
            else:
                head = urlsplit(self.dashboard_url).hostname or "127.0.0.1"
                found = address_toward(head)
                if found is None:
                    raise ValueError(f"cannot tell this host's address toward the Ray head {head!r}: set ROTA_PUBLIC_URL")
                host = found
        return f"http://{bracketed(host)}:{self.port}"

    @property
    def admin_key_path(self) -> Path:
        return self.home / "admin_key"

    @property
    def internal_token_path(self) -> Path:
        """Where older home directories keep the gateway's token (newer ones derive it from the secret key)."""
        return self.home / "internal_token"

    @property
    def secret_key_path(self) -> Path:
        return self.home / "secret_key"

    def policy(self) -> Policy:
        roots = self.model_roots.split(os.pathsep) if self.model_roots else [str(self.home.resolve() / "models")]
        return Policy(
            model_roots=tuple(r.rstrip("/") or "/" for r in roots if r),
            extra_env=_names(self.allowed_env),
            extra_engine_args=_names(self.allowed_engine_args),
        )


class ClientSettings(BaseSettings):
    """What the CLI reads: where the API is and which key to send."""

    model_config = SettingsConfigDict(env_prefix="ROTA_", extra="ignore")

    api_url: str | None = None
    api_key: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    home: Path = Field(default_factory=_home)

    @property
    def url(self) -> str:
        return (self.api_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def key(self) -> str | None:
        """ROTA_API_KEY, else the admin key the local server wrote to ROTA_HOME/admin_key."""
        if self.api_key:
            return self.api_key.get_secret_value().strip()
        try:
            return (self.home / "admin_key").read_text().strip() or None
        except OSError:
            return None
