"""What Rota asks Ray Serve for: one application spec per endpoint, and the gateway's.

Pure, on plain values: the reconciler loads a snapshot of the endpoints (``EndpointState``)
and builds every spec from it once per tick. Replica bounds are always sent as
``autoscaling_config`` (min == max is a fixed count): changing only the bounds is a
lightweight update in Ray Serve that keeps running replicas, while switching between
``num_replicas`` and ``autoscaling_config`` restarts them (measured), so Rota never does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GATEWAY_APP = "rota-gateway"
GATEWAY_ROUTE = "/"
# Bumped when what the gateway expects of the control plane changes (2: the request log's
# switch comes with the routing table): a new value rolls running gateways onto new code.
GATEWAY_VERSION = 2
# Set on every application Rota deploys: which Rota (a digest of its secret key) it is.
# On a shared cluster, applications without this Rota's mark are left as they are.
OWNER_ENV = "ROTA_OWNER"
# Settings Rota sets on the autoscaling config besides the bounds (compared to detect a change).
AUTOSCALING_KEYS = (
    "initial_replicas",
    "target_ongoing_requests",
    "downscale_delay_s",
    "downscale_to_zero_delay_s",
    "upscale_delay_s",
)


@dataclass(frozen=True)
class AppSpec:
    """The desired state of one Ray Serve application."""

    name: str
    route_prefix: str
    import_path: str
    ingress: str  # the deployment whose replicas the bounds apply to
    min_replicas: int
    max_replicas: int
    args: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    ray_actor_options: dict[str, Any] = field(default_factory=dict)
    autoscaling: dict[str, Any] = field(default_factory=dict)  # AUTOSCALING_KEYS
    owner: str | None = None  # OWNER_ENV's value

    def to_serve_config(self) -> dict[str, Any]:
        """This application as an entry of Ray Serve's declarative config."""
        deployment: dict[str, Any] = {
            "name": self.ingress,
            "autoscaling_config": {"min_replicas": self.min_replicas, "max_replicas": self.max_replicas, **self.autoscaling},
        }
        if self.ray_actor_options:
            deployment["ray_actor_options"] = dict(self.ray_actor_options)
        cfg: dict[str, Any] = {
            "name": self.name,
            "route_prefix": self.route_prefix,
            "import_path": self.import_path,
            "args": dict(self.args),
            "deployments": [deployment],
        }
        env = {**self.env, OWNER_ENV: self.owner} if self.owner else self.env
        if env:
            cfg["runtime_env"] = {"env_vars": dict(env)}
        return cfg


@dataclass(frozen=True)
class Bounds:
    min: int
    max: int
    source: str  # "schedule" (a task's last fire) or "scaling" (the endpoint's own)


def bounds_of(scaling_bounds: tuple[int, int] | None, scheduled: tuple[int, int] | None) -> Bounds | None:
    """Bounds in force: a driving task's last fire, else the endpoint's own scaling, else
    none (an application that only a schedule sizes, before its first fire)."""
    if scheduled is not None:
        return Bounds(scheduled[0], scheduled[1], "schedule")
    if scaling_bounds is not None:
        return Bounds(scaling_bounds[0], scaling_bounds[1], "scaling")
    return None


def settings_mark(generation: int, bounds: Bounds | None, cooldown_s: float | None, target_ongoing: float | None) -> str:
    """What an endpoint should run, in one string: its generation (model, engine, args,
    env) and its scaling. The reconciler stores the mark Ray Serve was seen to have taken;
    while the stored and the current marks differ, the status may still describe older
    settings (the endpoint has not converged)."""
    lo, hi = (bounds.min, bounds.max) if bounds else (None, None)
    return f"{generation}/{lo}/{hi}/{cooldown_s}/{target_ongoing}"


def capacity(per_replica: int, max_replicas: int, queued: int | None) -> int:
    """Requests the gateway admits at once for an endpoint: every replica's capacity, plus
    its queue (by default as much again)."""
    serving = per_replica * max(1, max_replicas)
    return serving + (serving if queued is None else queued)


@dataclass(frozen=True)
class EndpointState:
    """What the reconciler reads of one endpoint: a snapshot, plain values only."""

    id: int
    app_name: str
    route_prefix: str
    import_path: str
    ingress: str
    desired: str
    bounds: Bounds | None
    args: dict[str, Any]
    env: dict[str, str]
    resources: dict[str, Any]
    per_replica: int  # requests a replica takes at once (the application's max_ongoing_requests)
    cooldown_s: float | None = None  # its scaling's; None: sized by a schedule only (Ray Serve's own policy)
    target_ongoing: float | None = None
    token: str | None = None  # its own token, passed as args[token_arg]
    token_arg: str | None = None
    generation: int = 1
    ready_generation: int | None = None
    status: str = "INITIALIZING"
    reported_phase: str | None = None
    applied: tuple[int, int] | None = None


def target_ongoing(target: float | None, per_replica: int) -> float:
    """Requests per replica Ray Serve's autoscaler aims at: the endpoint's, or half of what a
    replica takes at once."""
    return target or max(1, per_replica // 2)


def endpoint_spec(ep: EndpointState, report_url: str | None = None) -> AppSpec | None:
    """The desired Ray Serve application of an endpoint (None unless it should run)."""
    if ep.desired != "running" or ep.bounds is None:
        return None
    lo, hi = ep.bounds.min, ep.bounds.max
    autoscaling: dict[str, Any] = {}
    if ep.cooldown_s is not None:
        autoscaling = {
            # Load the model at deploy even with min 0, so a broken model fails at once
            # and the endpoint is READY before it sleeps.
            "initial_replicas": max(lo, 1),
            "target_ongoing_requests": target_ongoing(ep.target_ongoing, ep.per_replica),
            "downscale_delay_s": ep.cooldown_s,
        }
        if lo == 0:
            autoscaling["downscale_to_zero_delay_s"] = ep.cooldown_s
    args = dict(ep.args)
    if ep.token_arg and ep.token:
        args[ep.token_arg] = ep.token
        if report_url:  # where a starting replica reports its phase (with its own token)
            args["report_url"] = report_url
    return AppSpec(
        name=ep.app_name,
        route_prefix=ep.route_prefix,
        import_path=ep.import_path,
        ingress=ep.ingress,
        min_replicas=lo,
        max_replicas=hi,
        args=args,
        env=dict(ep.env),
        ray_actor_options=dict(ep.resources),
        autoscaling=autoscaling,
    )


def gateway_spec(
    control_url: str,
    token: str,
    serve_port: int,
    refresh_s: float,
    wake_timeout_s: float,
    max_body: int,
    content_max_bytes: int = 16_384,
    replicas: tuple[int, int] = (1, 1),
    target_ongoing: int = 64,
) -> AppSpec:
    """The OpenAI base URL: ``serve_apps/gateway.py`` at ``/`` of the Serve port, on
    ``replicas`` (min, max) autoscaled by requests in flight; its replicas share each
    endpoint's admission limit (``serve_apps/_admission.py``)."""
    lo, hi = replicas
    if lo > hi:
        raise ValueError(f"gateway replicas: min {lo} > max {hi}")
    return AppSpec(
        name=GATEWAY_APP,
        route_prefix=GATEWAY_ROUTE,
        import_path="gateway:app",
        ingress="Gateway",
        min_replicas=lo,
        max_replicas=hi,
        autoscaling={} if lo == hi else {"target_ongoing_requests": target_ongoing},
        args={
            "control_url": control_url,
            "token": token,
            "upstream": f"http://127.0.0.1:{serve_port}",
            "refresh_s": refresh_s,
            "wake_timeout_s": wake_timeout_s,
            "max_body_bytes": max_body,
            "content_max_bytes": content_max_bytes,
            "version": GATEWAY_VERSION,
        },
    )
