"""An in-memory stand-in for Ray Serve, at the one boundary where fakes are allowed.

It behaves like Ray Serve in the ways the reconciler relies on: a PUT replaces the set
of applications; a change of autoscaling bounds only keeps the running replicas and
adds/removes some; any other change replaces them; apps named in `failing` fail.
"""

from __future__ import annotations

import itertools

from rota.domain.errors import RayUnavailable
from rota.domain.reconcile import AppSpec, Observation, ObservedApp

_ids = (f"r{n:05d}" for n in itertools.count())


class FakeRay:
    def __init__(self):
        self.apps: dict[str, dict] = {}
        self.reachable = True
        self.puts = 0
        self.failing: dict[str, str] = {}
        self.unrouted: set[str] = set()  # apps whose HTTP route is not served yet

    def observe(self) -> Observation:
        if not self.reachable:
            return Observation(False, {}, "connection refused")
        out = {}
        for name, a in self.apps.items():
            failed = name in self.failing
            out[name] = ObservedApp(
                name, "DEPLOY_FAILED" if failed else "RUNNING", self.failing.get(name, ""), a["config"],
                a["target"], () if failed else tuple(a["replicas"]),
            )  # fmt: skip
        routes = {a["config"]["route_prefix"]: n for n, a in self.apps.items() if n not in self.unrouted}
        return Observation(True, out, routes=routes)

    def apply(self, specs: list[AppSpec]) -> None:
        if not self.reachable:
            raise RayUnavailable("connection refused")
        self.puts += 1
        new = {}
        for s in specs:
            cfg = s.to_serve_config()
            old = self.apps.get(s.name)
            target = max(s.min_replicas, s.autoscaling.get("initial_replicas", 0)) if not old else min(
                max(old["target"], s.min_replicas), s.max_replicas
            )
            same_code = old and {k: v for k, v in old["config"].items() if k != "deployments"} == {
                k: v for k, v in cfg.items() if k != "deployments"
            }
            replicas = list(old["replicas"]) if same_code else []
            while len(replicas) < target:
                replicas.append(next(_ids))
            del replicas[target:]
            new[s.name] = {"config": cfg, "target": target, "replicas": replicas}
        self.apps = new

    def autoscale(self, name: str, replicas: int) -> None:
        """What Ray Serve's autoscaler would do within the bounds (e.g. to zero when idle)."""
        a = self.apps[name]
        a["target"] = replicas
        while len(a["replicas"]) < replicas:
            a["replicas"].append(next(_ids))
        del a["replicas"][replicas:]
