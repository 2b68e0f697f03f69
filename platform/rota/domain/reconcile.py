"""The reconciler's decide step: desired applications vs observed ones -> what to do.

Pure: no database, no Ray. ``rota.reconciler.loop`` loads the inputs, calls these
functions and applies the results.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from rota.domain.specs import AUTOSCALING_KEYS, OWNER_ENV, AppSpec


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
    route_prefix: str | None = None
    source: str = "declarative"  # "imperative": deployed with serve.run (a PUT never removes it)

    @property
    def owner(self) -> str | None:
        """The Rota that deployed it (its mark), if any."""
        env = ((self.deployed_config or {}).get("runtime_env") or {}).get("env_vars") or {}
        return env.get(OWNER_ENV) if isinstance(env, dict) else None

    @property
    def import_path(self) -> str | None:
        return (self.deployed_config or {}).get("import_path")


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

    def routed(self, prefix: str) -> bool | None:
        """Whether the ingress serves ``prefix`` (None: it did not answer)."""
        if self.routes_error:
            return None
        return self.routes is None or prefix in self.routes


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


def _fingerprint(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """The parts of an application config Rota sets, normalized for comparison."""
    if cfg is None:
        return {}
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
    out: dict[str, Any] = _norm(
        {
            "route_prefix": cfg.get("route_prefix"),
            "import_path": cfg.get("import_path"),
            "args": cfg.get("args") or {},
            "env": env,
            "deployments": sorted(deps, key=lambda x: x["name"] or ""),
        }
    )
    return out


def config_diff(deployed: dict[str, Any] | None, spec: AppSpec) -> list[str]:
    """Which parts of ``spec``'s config Ray Serve does not have (empty: it has taken it)."""
    have, want = _fingerprint(deployed), _fingerprint(spec.to_serve_config())
    return sorted(k for k in want if have.get(k) != want[k])


def config_matches(deployed: dict[str, Any] | None, spec: AppSpec) -> bool:
    return not config_diff(deployed, spec)


def marked(spec: AppSpec, owner: str | None, observed: ObservedApp | None) -> AppSpec:
    """``spec`` with this Rota's mark, except on an application it deployed before it
    marked them while only its bounds change: adding the mark would restart its replicas."""
    if owner is None:
        return spec
    if observed is not None and observed.owner is None and observed.deployed_config is not None:
        plain = replace(spec, owner=None)
        if not {"route_prefix", "import_path", "args", "env"} & set(config_diff(observed.deployed_config, plain)):
            return plain
    return replace(spec, owner=owner)


def foreign(observation: Observation, owner: str, known: Mapping[str, tuple[str | None, str | None]]) -> dict[str, ObservedApp]:
    """The applications on the cluster that are not this Rota's: not marked as its own,
    and not one it deployed before it marked them (unmarked, named as one of its
    applications in ``known``, name -> (route, import path), with that route or that
    import path: Rota 0.1's). Rota never changes, scales or deletes them."""

    def legacy(n: str, a: ObservedApp) -> bool:
        return n in known and (a.route_prefix == known[n][0] or a.import_path == known[n][1])

    return {n: a for n, a in observation.apps.items() if a.owner != owner and (a.owner is not None or not legacy(n, a))}


def building(held: Mapping[str, ObservedApp]) -> list[str]:
    """Held applications Ray is still building (no deployments yet): a PUT, even of their
    unchanged config, would cancel that build and start it again."""
    return sorted(n for n, a in held.items() if a.status == "DEPLOYING" and a.target_replicas is None)


def clashes(spec: AppSpec, held: Mapping[str, ObservedApp]) -> bool:
    return spec.name in held or spec.route_prefix in {a.route_prefix for a in held.values()}


def screen(specs: list[AppSpec], held: dict[str, ObservedApp] | None = None) -> tuple[list[AppSpec], dict[str, str]]:
    """Specs Ray Serve can take together, and why each other one cannot.

    Ray Serve refuses a whole config in which two applications share a name or a route
    prefix, and a config that is not plain JSON cannot be sent at all; one such
    application must not stop every other one from being reconciled.
    Earlier specs win (the caller puts the gateway first, then endpoints oldest first);
    applications Rota did not deploy (``held``) win over all of them.
    """
    held = held or {}
    names: set[str] = set(held)
    routes: dict[str, str] = {a.route_prefix: n for n, a in held.items() if a.route_prefix}
    ok, rejected = [], {}
    for s in specs:
        try:
            json.dumps(s.to_serve_config(), allow_nan=False)
        except (TypeError, ValueError) as e:
            rejected[s.name] = f"its configuration is not plain JSON: {e}"
            continue
        by = " (one Rota did not deploy: it is left as it is)"
        if s.name in names:
            rejected[s.name] = f"another application is already named {s.name!r}" + (by if s.name in held else "")
        elif s.route_prefix in routes:
            other = routes[s.route_prefix]
            rejected[s.name] = f"route {s.route_prefix} is already served by another application" + (by if other in held else "")
        else:
            names.add(s.name)
            routes[s.route_prefix] = s.name
            ok.append(s)
    return ok, rejected


@dataclass(frozen=True)
class Decision:
    """Whether to send the full desired config to Ray Serve, and why."""

    put: bool
    reasons: tuple[str, ...] = ()
    missing: frozenset[str] = frozenset()  # desired applications Ray Serve does not have


def decide(desired: list[AppSpec], observation: Observation, keep: frozenset[str] = frozenset()) -> Decision:
    """Level-triggered: compare the whole desired set with the whole observed set.

    Ray Serve's declarative API replaces every application on each PUT, so the answer
    is all-or-nothing: either everything matches, or the full desired set is sent.
    An application that failed to deploy with the desired config is not re-sent (that
    would restart a failing deploy forever); a changed config is. Applications in
    ``keep`` stay as Ray Serve has them (e.g. one whose new config Ray refused).
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
        if name not in want and name not in keep and observation.apps[name].status != "DELETING":
            reasons.append(f"{name}: not desired")
    return Decision(bool(reasons), tuple(reasons), frozenset(missing))


def refused(message: str, specs: list[AppSpec]) -> list[AppSpec]:
    """The applications a refused PUT names: by position (pydantic's ``applications.N``,
    in the order they were sent) or by name."""
    at = {int(i) for i in re.findall(r"applications\.(\d+)", message) if int(i) < len(specs)}
    named = {i for i, s in enumerate(specs) if re.search(rf"\b{re.escape(s.name)}\b", message)}
    return [specs[i] for i in sorted(at or named)]


def why_refused(message: str, specs: list[AppSpec], spec: AppSpec) -> str:
    """The part of Ray's message about ``spec`` only: it can name other applications, and
    pydantic echoes the input (a config, its token) after ``[type=``."""
    lines, out, inside = [ln.strip() for ln in message.splitlines()], [], False
    for ln in lines:
        index = re.match(r"applications\.(\d+)", ln)
        if index:
            inside = int(index[1]) < len(specs) and specs[int(index[1])] is spec
        if inside:
            out.append(ln)
    out = out or [ln for ln in lines if re.search(rf"\b{re.escape(spec.name)}\b", ln)]
    return re.sub(r"\s*\[type=.*", "", " ".join(out))[:300] or "no detail"
