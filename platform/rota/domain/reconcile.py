"""The reconciler's decide step: desired applications vs observed ones -> what to do.

Pure: no database, no Ray. ``rota.reconciler.loop`` loads the inputs, calls these
functions and applies the results.

Replica bounds are always expressed as Ray Serve ``autoscaling_config`` (min == max is a
fixed count). Changing only the autoscaling bounds is a lightweight update in Ray Serve
that keeps running replicas; switching between ``num_replicas`` and
``autoscaling_config`` would restart them (measured), so Rota never does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rota.domain.status import AppStatus, EventKind


# Autoscaling settings Rota sets besides the bounds (compared to detect a change).
AUTOSCALING_KEYS = ("initial_replicas", "target_ongoing_requests", "downscale_delay_s", "downscale_to_zero_delay_s", "upscale_delay_s")


@dataclass(frozen=True)
class AppSpec:
    """The desired state of one Ray Serve application (a task's, an endpoint's, the gateway)."""

    name: str
    import_path: str
    ingress: str  # deployment whose replicas the bounds apply to
    min_replicas: int
    max_replicas: int
    args: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    ray_actor_options: dict[str, Any] = field(default_factory=dict)
    prefix: str | None = None  # route prefix; default /<name>
    autoscaling: dict[str, Any] = field(default_factory=dict)  # AUTOSCALING_KEYS

    @property
    def route_prefix(self) -> str:
        return self.prefix or f"/{self.name}"

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
        if self.env:
            cfg["runtime_env"] = {"env_vars": dict(self.env)}
        return cfg


@dataclass(frozen=True)
class ObservedApp:
    name: str
    status: str  # Ray Serve's application status
    message: str
    deployed_config: dict[str, Any] | None
    target_replicas: int | None
    running_replica_ids: tuple[str, ...]
    starting: int = 0  # replicas placed on a node, not yet running
    pending: int = 0  # replicas waiting for resources
    stopping: int = 0  # replicas draining before they go (they still answer)


@dataclass(frozen=True)
class Observation:
    """What Ray Serve reported, or why it could not be asked."""

    reachable: bool
    apps: dict[str, ObservedApp] = field(default_factory=dict)
    error: str | None = None
    # Route prefix -> application, as Serve's HTTP ingress reports it (None: not asked,
    # or the ingress did not answer, then `routes_error` says why).
    routes: dict[str, str] | None = None
    routes_error: str | None = None


def _norm(value: Any) -> Any:
    """Numbers as floats, recursively: Ray Serve hands back 1.0 for a 1 it was sent."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return str(value)


def _fingerprint(cfg: dict[str, Any] | None) -> dict[str, Any] | None:
    """The parts of an application config Rota sets, normalized for comparison."""
    if cfg is None:
        return None
    deps = []
    for d in cfg.get("deployments") or []:
        a = d.get("autoscaling_config") or {}
        deps.append(
            {
                "name": d.get("name"),
                "min": a.get("min_replicas"),
                "max": a.get("max_replicas"),
                "num_replicas": d.get("num_replicas"),
                "autoscaling": {k: a.get(k) for k in AUTOSCALING_KEYS},
                "actor": {k: v for k, v in (d.get("ray_actor_options") or {}).items() if v is not None},
            }
        )
    env = ((cfg.get("runtime_env") or {}).get("env_vars")) or {}
    return _norm(
        {
            "route_prefix": cfg.get("route_prefix"),
            "import_path": cfg.get("import_path"),
            "args": cfg.get("args") or {},
            "env": env,
            "deployments": sorted(deps, key=lambda x: x["name"] or ""),
        }
    )


def config_diff(deployed: dict[str, Any] | None, spec: "AppSpec") -> list[str]:
    """Which parts of ``spec``'s config Ray Serve does not have (empty: it has taken it)."""
    have, want = _fingerprint(deployed) or {}, _fingerprint(spec.to_serve_config()) or {}
    return sorted(k for k in want if have.get(k) != want[k])


def config_matches(deployed: dict[str, Any] | None, spec: AppSpec) -> bool:
    """Ray Serve has taken ``spec``'s config (the parts Rota sets)."""
    return not config_diff(deployed, spec)


@dataclass(frozen=True)
class Decision:
    """Whether to send the full desired config to Ray Serve, and why."""

    put: bool
    reasons: tuple[str, ...] = ()
    missing: frozenset[str] = frozenset()  # desired applications Ray Serve does not have


def decide(desired: list[AppSpec], observation: Observation) -> Decision:
    """Level-triggered: compare the whole desired set with the whole observed set.

    Ray Serve's declarative API replaces every application on each PUT, so the answer
    is all-or-nothing: either everything matches, or the full desired set is sent.
    An application that failed to deploy with the desired config is not re-sent (that
    would restart a failing deploy forever); a changed config is.
    """
    if not observation.reachable:
        return Decision(False, ("ray unreachable",))
    reasons: list[str] = []
    missing = set()
    want = {s.name: s for s in desired}
    for name, spec in want.items():
        obs = observation.apps.get(name)
        if obs is None:
            missing.add(name)
            reasons.append(f"{name}: missing")
        elif diff := config_diff(obs.deployed_config, spec):
            reasons.append(f"{name}: config differs ({', '.join(diff)})")
    for name in observation.apps:
        if name not in want and observation.apps[name].status != "DELETING":
            reasons.append(f"{name}: not desired")
    return Decision(bool(reasons), tuple(reasons), frozenset(missing))


@dataclass(frozen=True)
class AppState:
    status: AppStatus
    message: str | None
    target_replicas: int | None
    running_replica_ids: tuple[str, ...]


_RAY_TO_APP = {
    "NOT_STARTED": AppStatus.DEPLOYING,
    "DEPLOYING": AppStatus.DEPLOYING,
    "RUNNING": AppStatus.RUNNING,
    "UNHEALTHY": AppStatus.UNHEALTHY,
    "DEPLOY_FAILED": AppStatus.DEPLOY_FAILED,
    "DELETING": AppStatus.DELETING,
}


def observe_app(spec: AppSpec | None, observation: Observation, previous: AppState | None) -> AppState:
    """The state to show for one task's application."""
    if not observation.reachable:
        prev = previous or AppState(AppStatus.NOT_DEPLOYED, None, None, ())
        if spec is None and prev.status is AppStatus.NOT_DEPLOYED:
            return prev
        return AppState(AppStatus.UNREACHABLE, observation.error, prev.target_replicas, prev.running_replica_ids)
    if spec is None:
        return AppState(AppStatus.NOT_DEPLOYED, None, None, ())
    obs = observation.apps.get(spec.name)
    if obs is None:
        return AppState(AppStatus.DEPLOYING, "waiting for Ray Serve to create the application", None, ())
    status = _RAY_TO_APP.get(obs.status, AppStatus.DEPLOYING)
    message = obs.message or None
    if status is AppStatus.RUNNING and not config_matches(obs.deployed_config, spec):
        status = AppStatus.DEPLOYING  # our latest config has not been taken yet
    elif status is AppStatus.RUNNING and observation.routes_error:
        status, message = AppStatus.DEPLOYING, f"application running; HTTP ingress not answering: {observation.routes_error}"
    elif status is AppStatus.RUNNING and observation.routes is not None and spec.route_prefix not in observation.routes:
        # Ray reports the replicas healthy before its HTTP ingress routes to them:
        # RUNNING means callers can reach it.
        status, message = AppStatus.DEPLOYING, f"application running; waiting for its route {spec.route_prefix}"
    return AppState(status, message, obs.target_replicas, obs.running_replica_ids)


@dataclass(frozen=True)
class StateEvent:
    kind: EventKind
    message: str
    data: dict[str, Any] = field(default_factory=dict)


def state_events(old: AppState, new: AppState) -> list[StateEvent]:
    """Events for a change of observed application state (none when nothing changed)."""
    if old.status is new.status:
        return []
    s = new.status
    if old.status is AppStatus.UNREACHABLE and s is not AppStatus.RUNNING:
        return [StateEvent(EventKind.RECOVERED, f"Ray reachable again; application {s.value}", {})]
    if s is AppStatus.RUNNING:
        n = len(new.running_replica_ids)
        kind = EventKind.RECOVERED if old.status in (AppStatus.UNREACHABLE, *AppStatus.failed()) else EventKind.RUNNING
        return [StateEvent(kind, f"application running with {n} replica(s)", {"replicas": n})]
    if s in AppStatus.failed():
        return [StateEvent(EventKind.FAILED, new.message or s.value, {"app_status": s.value})]
    if s is AppStatus.UNREACHABLE:
        return [StateEvent(EventKind.UNREACHABLE, f"Ray unreachable: {new.message}", {})]
    if s is AppStatus.NOT_DEPLOYED and old.status is not AppStatus.UNREACHABLE:
        return [StateEvent(EventKind.REMOVED, "application removed from Ray Serve", {})]
    return []
