"""One OpenAI base URL for every dedicated endpoint: ``gateway:app``.

Rota deploys this application at route prefix ``/`` of the Ray Serve HTTP port, so
``http://<serve host>:8000/v1/chat/completions`` (and ``/v1/completions``,
``/v1/models``, any ``POST /v1/...`` whose JSON body names a ``model``) reaches it. It:

1. authenticates ``Authorization: Bearer <key>`` against the control plane's routing
   table (keys are known by their SHA-256 only; a key sees its own project only);
2. routes by the body's ``model`` (an endpoint's ``routing_key``) to that endpoint's
   application at ``/ep/<routing_key>`` on the same Serve HTTP port, adding the
   cluster-internal token the endpoint's server requires;
3. wakes an endpoint scaled to zero: the request is held while a call through the
   endpoint's deployment handle makes Ray Serve start a replica (Serve's own
   scale-from-zero), then forwarded; past ``wake_timeout_s`` the caller gets 503 with
   ``Retry-After``, never a 404;
4. admits at most ``max_concurrency`` requests per endpoint (its replicas' capacity plus
   its queue); beyond that a 429 with ``Retry-After``.

The routing table is pulled from the control plane every ``refresh_s`` and at once on
an unknown key or model, so a new key works at once and a revoked key stops working
within ``refresh_s``. If the control plane is down, the last table keeps serving.

Self-contained on purpose (Starlette, aiohttp and Ray, all in ``ray[serve]``): worker images need not
install Rota.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

log = logging.getLogger("ray.serve")

# Statuses (Rota's endpoint statuses) in which a request is held until a replica is up.
WAKEABLE = {"SLEEPING", "AWAKING", "INITIALIZING", "UPDATING"}
# Statuses in which an endpoint does not serve and a request must not start it.
DOWN = {"STOPPING", "STOPPED", "TERMINATING", "TERMINATED", "FAILED"}
# Headers passed back from the endpoint to the caller.
PASS_BACK = ("content-type", "x-request-id", "retry-after")


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    control_url: str = Field(description="the control plane's base URL, reachable from the cluster")
    token: str = Field(description="cluster-internal token: reads the routing table, calls the endpoints")
    upstream: str = Field("http://127.0.0.1:8000", description="Ray Serve's HTTP address on this node")
    refresh_s: float = Field(1.0, gt=0, description="routing table refresh period")
    wake_timeout_s: float = Field(300.0, gt=0, description="how long a request waits for a sleeping endpoint")
    retry_after_s: int = Field(5, ge=1, description="Retry-After on 503s")


def _error(status: int, message: str, code: str, type_: str = "invalid_request_error", param: str | None = None,
           retry_after: int | None = None) -> JSONResponse:  # fmt: skip
    """An OpenAI-format error."""
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class RoutingTable:
    """The control plane's view: key hash -> project, routing key -> endpoint."""

    def __init__(self, cfg: GatewayConfig, http: "_Http"):
        self.cfg = cfg
        self.http = http
        self.keys: dict[str, int] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.loaded_at: float | None = None
        self._started_at = float("-inf")  # when the last successful load began
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.cfg.refresh_s)

    async def refresh(self, since: float | None = None) -> None:
        """Pull the table; with ``since``, only if no load began after that instant (the
        waiters of one load share it, so a burst of unknown keys costs one call)."""
        async with self._lock:
            if since is not None and self._started_at >= since:
                return
            started = time.monotonic()
            try:
                async with self.http.session.get(
                    self.cfg.control_url.rstrip("/") + "/internal/v1/routing",
                    headers={"Authorization": f"Bearer {self.cfg.token}"},
                    timeout=aiohttp.ClientTimeout(total=5.0),
                ) as r:
                    r.raise_for_status()
                    body = await r.json()
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
                log.warning("routing table refresh failed (keeping the last one): %s", e)
                return
            self.keys = {k["hash"]: k["project_id"] for k in body.get("keys", [])}
            self.endpoints = {e["routing_key"]: e for e in body.get("endpoints", [])}
            self.loaded_at = time.monotonic()
            self._started_at = started


class GatewayApp:
    """The ASGI side: one function per route, no framework on the hot path beyond Starlette."""

    def __init__(self, cfg: GatewayConfig):
        self.cfg = cfg
        self.http = _Http()
        self.table = RoutingTable(cfg, self.http)
        self.inflight: dict[str, int] = {}
        self.asgi = Starlette(
            routes=[
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/{rest:path}", self.forward, methods=["POST"]),
                Route("/-/healthz", self.healthz, methods=["GET"]),
            ]
        )

    async def healthz(self, request: Request) -> Response:
        age = None if self.table.loaded_at is None else round(time.monotonic() - self.table.loaded_at, 3)
        return JSONResponse({"routing_table_age_s": age, "endpoints": len(self.table.endpoints)})

    async def _project(self, request: Request) -> int | JSONResponse:
        arrived = time.monotonic()
        self.table.start()
        auth = request.headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return _error(401, "missing API key: send 'Authorization: Bearer <key>'", "invalid_api_key")
        h = key_hash(key.strip())
        if h not in self.table.keys:
            await self.table.refresh(since=arrived)  # a key created a moment ago
        project = self.table.keys.get(h)
        if project is None:
            return _error(401, "invalid or revoked API key", "invalid_api_key")
        return project

    async def models(self, request: Request) -> Response:
        project = await self._project(request)
        if isinstance(project, Response):
            return project
        data = [
            {"id": key, "object": "model", "created": e.get("created", 0), "owned_by": e.get("project", "rota"),
             "status": e["status"]}
            for key, e in sorted(self.table.endpoints.items()) if e["project_id"] == project
        ]  # fmt: skip
        return JSONResponse({"object": "list", "data": data})

    async def _endpoint(self, project: int, model: str, arrived: float) -> dict[str, Any] | None:
        ep = self.table.endpoints.get(model)
        if ep is None or ep["project_id"] != project:
            await self.table.refresh(since=arrived)  # an endpoint created a moment ago
            ep = self.table.endpoints.get(model)
        return ep if ep is not None and ep["project_id"] == project else None

    async def forward(self, request: Request) -> Response:
        arrived = time.monotonic()
        project = await self._project(request)
        if isinstance(project, Response):
            return project
        body = await request.body()
        try:
            model = json.loads(body).get("model")
        except (ValueError, AttributeError):
            return _error(400, "the request body must be a JSON object", "invalid_json")
        if not isinstance(model, str) or not model:
            return _error(400, "'model' is required: the routing_key of one of your endpoints", "missing_model", param="model")
        ep = await self._endpoint(project, model, arrived)
        if ep is None:
            return _error(404, f"the model {model!r} does not exist or you do not have access to it", "model_not_found", param="model")
        if ep["status"] in DOWN:
            detail = f": {ep['message']}" if ep.get("message") else ""
            return _error(503, f"endpoint {model!r} is {ep['status']}{detail}", "endpoint_unavailable", "service_unavailable")
        limit = ep.get("max_concurrency")
        if limit and self.inflight.get(model, 0) >= limit:
            return _error(429, f"endpoint {model!r} is at capacity ({limit} requests in flight); retry later",
                          "rate_limit_exceeded", "rate_limit_error", retry_after=1)  # fmt: skip
        self.inflight[model] = self.inflight.get(model, 0) + 1
        release = _Once(lambda: self._release(model))
        try:
            return await self._send(request, ep, body, release)
        except BaseException:
            release()
            raise

    def _release(self, model: str) -> None:
        self.inflight[model] -= 1

    async def _send(self, request: Request, ep: dict[str, Any], body: bytes, release: "_Once") -> Response:
        url = f"{self.cfg.upstream.rstrip('/')}{ep['route_prefix']}{request.url.path}"
        headers = {
            "content-type": request.headers.get("content-type", "application/json"),
            "authorization": f"Bearer {self.cfg.token}",
        }
        if "x-request-id" in request.headers:
            headers["x-request-id"] = request.headers["x-request-id"]
        deadline = time.monotonic() + self.cfg.wake_timeout_s
        woke = ep["status"] not in WAKEABLE
        while True:
            if not woke:
                woke = await self._wake(ep, deadline)
                if not woke:
                    if time.monotonic() >= deadline:
                        release()
                        return self._not_ready(ep)
                    continue
            try:
                upstream = await self.http.session.post(url, headers=headers, data=body, timeout=_FORWARD_TIMEOUT)
            except aiohttp.ClientConnectionError:
                upstream = None
            if upstream is not None and not _no_replica(upstream):
                break
            if upstream is not None:
                upstream.release()
            if time.monotonic() >= deadline:
                release()
                return self._not_ready(ep)
            woke = False  # no replica answered: (re)wake, then retry
            await asyncio.sleep(0.2)
        if upstream.status == 503:  # Ray Serve's queue for this endpoint is full
            upstream.release()
            release()
            return _error(429, f"endpoint {ep['routing_key']!r} is at capacity; retry later", "rate_limit_exceeded",
                          "rate_limit_error", retry_after=1)  # fmt: skip
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() in PASS_BACK}

        async def stream():
            try:
                async for chunk in upstream.content.iter_any():
                    yield chunk
            finally:
                upstream.release()
                release()

        return StreamingResponse(stream(), status_code=upstream.status, headers=out_headers)

    def _not_ready(self, ep: dict[str, Any]) -> Response:
        return _error(503, f"endpoint {ep['routing_key']!r} did not become ready within {self.cfg.wake_timeout_s:g}s; it is "
                      "waking up, retry later", "endpoint_waking", "service_unavailable", retry_after=self.cfg.retry_after_s)  # fmt: skip

    async def _wake(self, ep: dict[str, Any], deadline: float) -> bool:
        """Ask Ray Serve for a replica: a handle call queues until one is up (scale from zero)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            handle = serve.get_app_handle(ep["app"])
            await asyncio.wait_for(handle.wake.remote(), timeout=remaining)
            return True
        except asyncio.TimeoutError:
            return False
        except Exception as e:  # noqa: BLE001 - e.g. the application is being redeployed
            log.info("waking %s: %s: %s", ep["app"], type(e).__name__, e)
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            return False


def _no_replica(r: aiohttp.ClientResponse) -> bool:
    """The Serve ingress had nowhere to send it: the endpoint has no ready replica (yet).

    Ray Serve answers 404 for a route it does not (yet) serve and HAProxy 503 without a
    ``content-type`` when a backend has no server; a replica's own 503 (its queue is
    full) is JSON and is passed on as a 429.
    """
    if r.status in (502, 504):
        return True
    return r.status in (404, 503) and "json" not in r.headers.get("content-type", "")


# No total timeout: a generation streams for as long as it takes.
_FORWARD_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=5.0)


class _Http:
    """One connection pool per replica, created inside its event loop on first use."""

    _session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60), auto_decompress=False
            )
        return self._session


class _Once:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self) -> None:
        fn, self.fn = self.fn, None
        if fn is not None:
            fn()


@serve.deployment(
    ray_actor_options={"num_cpus": 0},
    # The gateway holds requests while endpoints wake and streams their tokens: its own
    # concurrency is bounded per endpoint, not here.
    max_ongoing_requests=100_000,
)
@serve.ingress()
class Gateway:
    def __init__(self, config: dict[str, Any]):
        self._app = GatewayApp(GatewayConfig.model_validate(config))

    def __serve_build_asgi_app__(self):
        return self._app.asgi


def app(args: dict[str, Any]):
    """Ray Serve application builder: ``gateway:app``."""
    return Gateway.bind(GatewayConfig.model_validate(args).model_dump())
