"""An in-memory stand-in for Ray Serve, at the one boundary where fakes are allowed.

It behaves like Ray Serve in the ways the reconciler relies on: a PUT replaces the set
of applications; a change of autoscaling settings only keeps the running replicas and
adds/removes some; any other change replaces them; apps named in `failing` fail; a PUT
with an app named in `refuse` is refused as a whole (a 400), naming it; applications
deployed "imperatively" (``source``) stay through every PUT, as `serve.run`'s do.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from rota.domain.errors import RayRejected, RayTimedOut, RayUnavailable
from rota.domain.reconcile import Observation, ObservedApp

_ids = (f"r{n:05d}" for n in itertools.count())


class FakeRay:
    def __init__(self) -> None:
        self.apps: dict[str, dict[str, Any]] = {}
        self.reachable = True
        self.puts = 0
        self.waits: list[float | None] = []  # how long each PUT was willing to wait for Ray's answer
        self.by: list[str | None] = []  # who each PUT said it came from
        self.answer_late = False  # the next PUT is applied, then times out on the client's side
        self.failing: dict[str, str] = {}
        self.refuse: set[str] = set()
        self.unrouted: set[str] = set()  # apps whose HTTP route is not served yet
        self.deleting: set[str] = set()  # apps another client's PUT left out: Ray is deleting them
        self.building: set[str] = set()  # apps Ray is still building (no deployments, no replicas yet)
        self.blank_once = False  # the next answer lists no application (Ray's controller did not answer in time)
        self.on_observe: Callable[[], None] | None = None  # runs inside observe (e.g. a fire racing the tick)

    def observe(self) -> Observation:
        if self.on_observe:
            hook, self.on_observe = self.on_observe, None
            hook()
        if not self.reachable:
            return Observation(False, {}, "connection refused")
        if self.blank_once:
            self.blank_once = False
            return Observation(True, {}, routes={})
        out = {}
        for name, a in self.apps.items():
            failed = name in self.failing
            out[name] = ObservedApp(
                name,
                "DEPLOY_FAILED"
                if failed
                else "DELETING"
                if name in self.deleting
                else "DEPLOYING"
                if name in self.building
                else "RUNNING",
                self.failing.get(name, ""),
                None if a.get("source") == "imperative" else a["config"],
                None if name in self.building else a["target"],
                () if failed or name in self.building else tuple(a["replicas"]),
                route_prefix=a["config"]["route_prefix"],
                source=a.get("source", "declarative"),
            )
        routes = {a["config"]["route_prefix"]: n for n, a in self.apps.items() if n not in self.unrouted}
        return Observation(True, out, routes=routes)

    def apply(self, configs: list[dict[str, Any]], within: float | None = None, by: str | None = None) -> None:
        self.waits.append(within)
        self.by.append(by)
        if not self.reachable:
            raise RayUnavailable("connection refused")
        names = [c["name"] for c in configs]
        for i, name in enumerate(names):
            if name in self.refuse:
                raise RayRejected(
                    f"1 validation error for ServeDeploySchema\napplications.{i}.deployments\n  bad config of {name}"
                )
        assert len(names) == len(set(names)), f"duplicate names in a PUT: {names}"
        routes = [c["route_prefix"] for c in configs]
        assert len(routes) == len(set(routes)), f"duplicate routes in a PUT: {routes}"
        # Applications deployed with serve.run: a PUT does not remove them (one that names
        # them takes them over as declarative ones, as Ray 2.60 does).
        new = {n: a for n, a in self.apps.items() if a.get("source") == "imperative" and n not in names}
        self.puts += 1
        for cfg in configs:
            old = self.apps.get(cfg["name"])
            dep = cfg["deployments"][0]
            fixed = dep.get("num_replicas", 1)
            auto = dep.get("autoscaling_config") or {"min_replicas": fixed, "max_replicas": fixed}
            lo, hi = int(auto["min_replicas"]), int(auto["max_replicas"])
            target = max(lo, int(auto.get("initial_replicas") or 0)) if not old else min(max(old["target"], lo), hi)
            same_code = old and {k: v for k, v in old["config"].items() if k != "deployments"} == {
                k: v for k, v in cfg.items() if k != "deployments"
            }
            replicas = list(old["replicas"]) if same_code else []
            while len(replicas) < target:
                replicas.append(next(_ids))
            del replicas[target:]
            new[cfg["name"]] = {"config": cfg, "target": target, "replicas": replicas}
        self.apps = new
        if self.answer_late:  # Ray took it; its answer came after the client gave up
            self.answer_late = False
            raise RayTimedOut("did not answer in time")

    def autoscale(self, name: str, replicas: int) -> None:
        """What Ray Serve's autoscaler would do within the bounds (e.g. to zero when idle)."""
        a = self.apps[name]
        a["target"] = replicas
        while len(a["replicas"]) < replicas:
            a["replicas"].append(next(_ids))
        del a["replicas"][replicas:]


class FakeLogs:
    """Ray's state and log APIs in memory: replica actors per application, and the text
    of their ``out``/``err`` files (``follow`` gives what is appended after it starts)."""

    def __init__(self):
        from rota.serve.logs import ReplicaActor

        self._actor = ReplicaActor
        self.actors: dict[str, list] = {}  # app -> ReplicaActors
        self.files: dict[tuple[str, str], str] = {}  # (actor_id, stream) -> text

    def add(self, app: str, replica_id: str, alive: bool = True, out: str = "", err: str = "") -> str:
        actor_id = f"actor-{replica_id}"
        self.actors.setdefault(app, []).append(self._actor(replica_id, actor_id, "Echo", alive))
        self.files[(actor_id, "out")], self.files[(actor_id, "err")] = out, err
        return actor_id

    def write(self, actor_id: str, stream: str, text: str) -> None:
        self.files[(actor_id, stream)] += text

    def replicas(self, app: str) -> list:
        return sorted(self.actors.get(app, []), key=lambda r: not r.alive)

    def read(self, actor_id: str, stream: str, lines: int) -> str:
        return "\n".join(self.files.get((actor_id, stream), "").splitlines()[-lines:])

    async def follow(self, actor_id: str, stream: str, lines: int):
        import asyncio

        text = self.files.get((actor_id, stream), "")
        tail = text.splitlines(keepends=True)[-lines:]
        if tail:
            yield "".join(tail)
        seen = len(text)
        while True:
            text = self.files.get((actor_id, stream), "")
            if len(text) > seen:
                yield text[seen:]
                seen = len(text)
            await asyncio.sleep(0.02)
