"""Ray Serve through the Ray dashboard's REST API (``/api/serve/applications/``).

``RayServe`` is all the rest of Rota sees of Ray: observe, and apply a whole declarative
config. The unit tier replaces it with an in-memory Ray Serve (tests/support/fake_ray.py).
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from rota import __version__
from rota.domain.errors import RayRejected, RayTimedOut, RayUnavailable
from rota.domain.reconcile import Observation, ObservedApp


class RayServe(Protocol):
    def observe(self) -> Observation: ...

    def apply(self, apps: list[dict[str, Any]], within: float | None = None, by: str | None = None) -> None:
        """Make ``apps`` (Serve application configs) the whole declarative set; wait for
        Ray's answer ``within`` seconds at most (None: the client's own timeout). ``by``:
        who PUTs (the control plane and its lease's epoch), in the request's User-Agent."""


class ServeClient:
    """Observe and apply Ray Serve's declarative config. A PUT replaces the whole set of
    declarative applications, so ``apply`` always sends every application."""

    def __init__(
        self, dashboard_url: str, token: str | None, serve_host: str, serve_port: int, serve_url: str, timeout: float = 10.0
    ):
        """``serve_host``/``serve_port``: where Ray Serve listens (its HTTP options);
        ``serve_url``: where this process reaches it (for ``/-/routes``)."""
        self.url = dashboard_url.rstrip("/") + "/api/serve/applications/"
        self.routes_url = f"{serve_url.rstrip('/')}/-/routes"
        self.token = token
        self.http_options = {"host": serve_host, "port": serve_port}
        self.target_capacity: float | None = None
        self.timeout = timeout
        self._http = httpx.Client(timeout=timeout)

    def _request(self, method: str, by: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers["User-Agent"] = f"rota/{__version__}" + (f" ({by})" if by else "")
        try:
            r = self._http.request(method, self.url, headers=headers, **kw)
        except httpx.TimeoutException as e:
            raise RayTimedOut(f"Ray dashboard at {self.url} did not answer in time: {type(e).__name__}") from None
        except httpx.HTTPError as e:
            raise RayUnavailable(f"Ray dashboard at {self.url} unreachable: {type(e).__name__}: {e}") from None
        if r.status_code in (401, 403):
            raise RayUnavailable(f"Ray dashboard refused the auth token ({r.status_code}) at {self.url}")
        if 400 <= r.status_code < 500:
            raise RayRejected(r.text[:4000])
        if r.status_code >= 500:
            raise RayUnavailable(f"Ray dashboard {method} {self.url} -> {r.status_code}: {r.text[:500]}")
        return r

    def observe(self) -> Observation:
        try:
            body = self._request("GET").json()
        except (RayUnavailable, RayRejected) as e:
            return Observation(False, {}, e.message)
        apps = parse_applications(body)
        self.target_capacity = body.get("target_capacity")  # the cluster's: every PUT carries it on
        if not apps:
            return Observation(True, apps)
        try:
            r = self._http.get(self.routes_url, timeout=2.0)
            r.raise_for_status()
            return Observation(True, apps, routes=r.json())
        except (httpx.HTTPError, ValueError) as e:
            return Observation(True, apps, routes_error=f"{self.routes_url}: {type(e).__name__}: {e}")

    def apply(self, apps: list[dict[str, Any]], within: float | None = None, by: str | None = None) -> None:
        config: dict[str, Any] = {"http_options": self.http_options, "applications": apps}
        if self.target_capacity is not None:  # left out, Ray would reset it for every application
            config["target_capacity"] = self.target_capacity
        self._request("PUT", by=by, json=config, timeout=self.timeout if within is None else deadline(min(self.timeout, within)))

    def close(self) -> None:
        self._http.close()


def deadline(seconds: float) -> httpx.Timeout:
    """httpx times each phase on its own: shares of ``seconds`` that add up to it."""
    return httpx.Timeout(connect=0.2 * seconds, write=0.2 * seconds, read=0.5 * seconds, pool=0.1 * seconds)


def parse_applications(body: dict[str, Any]) -> dict[str, ObservedApp]:
    apps = {}
    for name, a in (body.get("applications") or {}).items():
        deployments = a.get("deployments") or {}
        cfg = a.get("deployed_app_config") or None
        ingress = cfg["deployments"][0].get("name") if cfg and cfg.get("deployments") else None
        dep = deployments.get(ingress) if ingress else next(iter(deployments.values()), None)
        target = dep.get("target_num_replicas") if dep else None
        listed = (dep or {}).get("replicas") or []
        replicas = tuple(r.get("replica_id") for r in listed if r.get("state") == "RUNNING")
        coming = [r for r in listed if r.get("state") in ("STARTING", "UPDATING", "RECOVERING")]
        placed = sum(1 for r in coming if r.get("node_id") and r.get("pid"))
        # Replicas the controller wants but has not listed yet wait for resources too.
        unlisted = max(0, (target or 0) - len(replicas) - len(coming))
        message = a.get("message") or ""
        failing = [d for d in deployments.values() if d.get("status") in ("UNHEALTHY", "DEPLOY_FAILED") and d.get("message")]
        if failing:
            # The application's own message is generic ("Failed to update the
            # deployments [...]"); the cause is in the deployment's, after a traceback.
            message = "; ".join(f"{d['name']}: {root_cause(d['message'])}" for d in failing)
        apps[name] = ObservedApp(
            name,
            a.get("status", "UNKNOWN"),
            message,
            cfg,
            target,
            replicas,
            starting=placed,
            pending=len(coming) - placed + unlisted,
            stopping=sum(1 for r in listed if r.get("state") == "STOPPING"),
            # While Ray builds an application it reports no route: the config's (default "/").
            route_prefix=a.get("route_prefix") or (cfg.get("route_prefix", "/") if cfg else None),
            source=str(a.get("source") or "declarative").lower(),
        )
    return apps


def root_cause(message: str, limit: int = 500) -> str:
    """The last exception line of a Ray error message, or the message's first line."""
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        head = ln.split(":", 1)[0]
        if head.endswith(("Error", "Exception", "Exit", "Interrupt")) and " " not in head:
            return ln[:limit]
    return (lines[0] if lines else message)[:limit]
