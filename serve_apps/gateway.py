"""One OpenAI base URL for every endpoint: ``gateway:app`` (Rota's own; not deployable by users).

Rota deploys this application at route prefix ``/`` of the Ray Serve HTTP port, so
``http://<serve host>:8000/v1/chat/completions`` (``/v1/completions``,
``/v1/embeddings``, ``GET /v1/models``) reaches it. It:

1. authenticates ``Authorization: Bearer <key>`` against the control plane's routing
   table (keys are known by their SHA-256 only; a key sees its own project only);
2. routes by the body's ``model`` (a routing key of the caller's project) to that
   endpoint's application on the same Serve HTTP port, on the OpenAI route it was
   called on (an allow-list: nothing else is forwarded), with the endpoint's own token;
3. wakes an endpoint scaled to zero: the request is held while a call through the
   endpoint's deployment handle makes Ray Serve start a replica (Serve's own
   scale-from-zero), then forwarded; past ``wake_timeout_s`` the caller gets 503 with
   ``Retry-After``, never a 404;
4. admits at most ``max_concurrency`` requests per endpoint (its replicas' capacity plus
   its queue), and at most the routing table's ``project_max_inflight`` per project, all
   its endpoints together; beyond either a 429 with ``Retry-After``. The limit holds across all the
   gateway's replicas together: they lease its slots from one shared pool
   (``_admission.py``), so the gateway scales out like any Serve deployment;
5. records every call in the request log (``_request_log.py``; not those of a project
   that keeps its calls out): the caller gets its ``x-request-id`` (its own, or a new
   one), and the control plane the record, in batches;
6. relays async invocations and the Files and Batch APIs (``/v1/async``, ``/v1/files``,
   ``/v1/batches``) to the control plane, which keeps them, with the caller's own key; the
   control plane's dispatcher sends queued work back through here with the gateway's
   token on behalf of a project (``x-rota-project``), as ``background``: admitted only up
   to the endpoint's ``async_limit``, so synchronous calls keep their room; the console's
   Playground sends with the same token for the signed-in key (``x-rota-key-id``/``-prefix``).

The routing table is pulled from the control plane every ``refresh_s``, and at once on
an unknown key or model, at most once per ``refresh_s`` (unknown keys are remembered as
such until the next pull): a new key works at once, a revoked key stops within
``refresh_s``, and random keys cannot make it hammer the control plane. If the control
plane is down, the last table keeps serving.

Self-contained on purpose (Starlette, aiohttp and Ray, all in ``ray[serve]``): worker
images need not install Rota.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from _admission import VERSION as ADMISSION_VERSION
from _admission import LocalPool, PoolClient, RayPool, Slots
from _request_log import Call, Recorder, Tap, request_id

log = logging.getLogger("ray.serve")

# Rota's endpoint statuses (rota.domain.status; a unit test keeps these in step).
WAKEABLE = frozenset({"SLEEPING", "AWAKING", "INITIALIZING", "UPDATING"})  # a request waits for a replica
DOWN = frozenset({"PENDING", "FAILED", "STOPPING", "STOPPED", "TERMINATING", "TERMINATED"})  # 503 at once
OPENAI_ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
PASS_BACK = ("content-type", "retry-after")  # headers passed back to the caller (and x-request-id, the gateway's)
VIA, NO_ROUTE = "x-rota-via", "x-rota-no-route"  # a forwarded call; the answer when it came back to the gateway
REPLICA_HEADER = "x-rota-replica"  # which replica answered (serve.py), for the request log
_WITH_USAGE = b'{"stream_options":{"include_usage":true},'  # opens a body that asks for usage
RELAYED = re.compile(r"^/v1/(?:async|files|batches)(?:/[A-Za-z0-9_-]+)*/?$")  # to the control plane (no dots)
RELAY_HEADERS = ("authorization", "content-type", "x-request-id")
_NEGATIVE_MAX = 10_000  # unknown keys remembered until the next pull
UNATTRIBUTED_PER_S = 20  # request records kept per second for calls no project was found for


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    control_url: str = Field(description="the control plane's base URL, reachable from the cluster")
    token: str = Field(description="the gateway's token: it reads the routing table with it")
    upstream: str = Field("http://127.0.0.1:8000", description="Ray Serve's HTTP address on this node")
    refresh_s: float = Field(1.0, gt=0, description="routing table refresh period")
    wake_timeout_s: float = Field(300.0, gt=0, description="how long a request waits for a sleeping endpoint")
    retry_after_s: int = Field(5, ge=1, description="Retry-After on 503s")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="larger request bodies get a 413")
    content_max_bytes: int = Field(16_384, ge=0, description="prompt/answer kept per call where content logging is on")
    log_interval_s: float = Field(1.0, gt=0, description="request records are sent this often")
    version: int = Field(1, ge=1, description="the control plane's GATEWAY_VERSION: a new one rolls the gateway onto its code")
    # Gateways deployed before the routing table carried the request log's switch have it
    # in their arguments: accepted (a replica restarted on newer code still starts), unused.
    request_log: bool | None = Field(None, exclude=True, description="unused: the routing table says")


def error(
    status: int,
    message: str,
    code: str,
    type_: str = "invalid_request_error",
    param: str | None = None,
    retry_after: int | None = None,
) -> JSONResponse:
    """An OpenAI-format error (its code kept on it for the request log)."""
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    r = JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}}, status, headers)
    r.error_code = code  # type: ignore[attr-defined]
    return r


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class RoutingTable:
    """The control plane's view: key hash -> project, (project, routing key) -> endpoint."""

    def __init__(self, refresh_s: float, fetch: Callable[[], Awaitable[dict[str, Any]]]):
        self.refresh_s, self.fetch = refresh_s, fetch
        self.keys: dict[str, dict[str, Any]] = {}  # key hash -> project_id, key id and prefix
        self.endpoints: dict[tuple[int, str], dict[str, Any]] = {}
        self.unknown: dict[str, float] = {}  # key hash -> when it was found unknown
        self.loaded_at: float | None = None
        # The control plane's ROTA_REQUEST_LOG, followed without a roll. Off: no request
        # records, no usage asked of streams, answers passed through unread.
        self.request_log = True
        self.unlogged: frozenset[int] = frozenset()  # projects that keep their calls out of it
        self.project_limit: int | None = None  # calls of one project in flight, all its endpoints together
        self.pulls = 0
        self._started = float("-inf")  # when the last pull began
        self._forced = float("-inf")  # when the last pull for something unknown began
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.refresh_s)

    async def refresh(self, forced_after: float | None = None) -> None:
        """Pull the table. Forced (for something unknown that arrived at ``forced_after``):
        not if a pull began since (a burst shares one), nor more than once per ``refresh_s``."""
        async with self._lock:
            now = time.monotonic()
            if forced_after is not None:
                if self._started >= forced_after or now - self._forced < self.refresh_s:
                    return
                self._forced = now
            self._started = now
            self.pulls += 1
            try:
                body = await self.fetch()
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
                log.warning("routing table refresh failed (keeping the last one): %s", e)
                return
            self.keys = {k["hash"]: k for k in body.get("keys", [])}
            self.endpoints = {(e["project_id"], e["routing_key"]): e for e in body.get("endpoints", [])}
            self.request_log = body.get("request_log") is not False
            self.unlogged = frozenset(body.get("unlogged_projects") or ())
            self.project_limit = body.get("project_max_inflight")
            self.loaded_at, self.unknown = time.monotonic(), {}

    async def key(self, key: str, arrived: float) -> dict[str, Any] | None:
        h = key_hash(key)
        if h not in self.keys and h not in self.unknown:
            await self.refresh(forced_after=arrived)  # a key created a moment ago
            if h not in self.keys:
                if len(self.unknown) >= _NEGATIVE_MAX:
                    self.unknown.pop(next(iter(self.unknown)))
                self.unknown[h] = time.monotonic()
        return self.keys.get(h)

    def logs(self, project_id: int | None) -> bool:
        """Whether a call of this project (None: no project found) leaves a record."""
        return self.request_log and project_id not in self.unlogged

    async def endpoint(self, project: int, model: str, arrived: float) -> dict[str, Any] | None:
        if (project, model) not in self.endpoints:
            await self.refresh(forced_after=arrived)  # an endpoint created a moment ago
        return self.endpoints.get((project, model))


class GatewayApp:
    """The ASGI side. ``session`` (the upstream HTTP client), ``wake``, ``ship`` (where
    request records go) and ``pool`` (admission slots shared by the gateway's replicas)
    are Ray Serve's and the control plane's by default; unit tests hand in their own."""

    def __init__(
        self,
        cfg: GatewayConfig,
        session: Callable[[], Any] | None = None,
        wake: Callable[[str], Awaitable[Any]] | None = None,
        ship: Callable[[bytes], Awaitable[None]] | None = None,
        pool: PoolClient | None = None,
    ):
        self.cfg = cfg
        self._session = session or _Http().session
        self._wake_app = wake or _wake_through_handle
        self.table = RoutingTable(cfg.refresh_s, self._fetch)
        self.admission = Slots(pool or _shared_pool(), _replica_name())
        self.recorder = Recorder(ship or self._ship, cfg.log_interval_s)
        self._unattributed: list[float] = [0.0, 0]  # second it began, records kept in it
        self._forward = self._logged(self.forward)
        self._routes = Starlette(
            routes=[
                Route("/v1/models", self._logged(self.models), methods=["GET"]),
                *(Route(path, self._forward, methods=["POST"]) for path in OPENAI_ROUTES),
                Route("/-/healthz", self.healthz, methods=["GET"]),
                *(
                    Route(path, self.relay, methods=["GET", "POST", "DELETE"])
                    for path in ("/v1/async{rest:path}", "/v1/files{rest:path}", "/v1/batches{rest:path}")
                ),
                Route(
                    "/{path:path}",
                    self._logged(self.unknown),
                    methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                ),
            ]
        )

    @property
    def asgi(self) -> GatewayApp:
        """The ASGI application: this object (servers tell ASGI 3 by an async ``__call__``)."""
        return self

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """The hot path (a POST to an OpenAI route) goes straight to its handler, and its
        answer straight to the server: no router, no middleware wrapping every chunk."""
        if scope["type"] == "http" and scope["method"] == "POST":
            path, root = scope["path"], scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            if path in OPENAI_ROUTES:
                response = await self._forward(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self._routes(scope, receive, send)

    async def _fetch(self) -> dict[str, Any]:
        async with self._session().get(
            self.cfg.control_url.rstrip("/") + "/internal/v1/routing",
            headers={"Authorization": f"Bearer {self.cfg.token}"},
            timeout=aiohttp.ClientTimeout(total=5.0),
        ) as r:
            r.raise_for_status()
            return await r.json()  # type: ignore[no-any-return]

    async def _ship(self, batch: bytes) -> None:
        async with self._session().post(
            self.cfg.control_url.rstrip("/") + "/internal/v1/requests",
            data=batch,
            headers={
                "Authorization": f"Bearer {self.cfg.token}",
                "x-rota-gateway": _replica_name(),
                "content-type": "application/json",
            },
            timeout=aiohttp.ClientTimeout(total=10.0),
        ) as r:
            r.raise_for_status()

    def _logged(self, handler: Callable[[Request, Call], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """Every answer carries the call's ``x-request-id`` and leaves a record: at once, or
        (a relayed answer) when its last byte is sent."""

        async def endpoint(request: Request) -> Response:
            given = request.headers.get("x-request-id")
            call = Call(request_id(given), request.url.path)
            try:
                response = await handler(request, call)
            except BaseException:  # e.g. the caller left while its endpoint woke up
                if self.table.logs(call.project_id):
                    self._record(call.record(499, "client_closed_request"))
                raise
            if given is None:  # Ray Serve's ingress gives every request one, and returns it itself
                response.headers["x-request-id"] = call.request_id
            if self.table.logs(call.project_id) and not isinstance(response, Relay):
                self._record(call.record(response.status_code, getattr(response, "error_code", None)))
            return response

        return endpoint

    async def close(self) -> None:
        """The replica is going away (after its last request): send the records it holds,
        give its admission slots back."""
        await self.recorder.drain()
        await self.admission.sync(release_all=True)

    def _record(self, record: dict[str, Any]) -> None:
        """Keep a record; calls no project was found for (a wrong key) at most
        ``UNATTRIBUTED_PER_S`` a second, so a flood of them cannot push out everyone's;
        none with the request log off (for this project, or for all)."""
        if not self.table.logs(record["project_id"]):
            return
        if record["project_id"] is None:
            now = time.monotonic()
            if now - self._unattributed[0] >= 1.0:
                self._unattributed = [now, 0]
            self._unattributed[1] += 1
            if self._unattributed[1] > UNATTRIBUTED_PER_S:
                self.recorder.sampled_out += 1
                return
        self.recorder.add(record)

    async def healthz(self, request: Request) -> Response:
        age = None if self.table.loaded_at is None else round(time.monotonic() - self.table.loaded_at, 3)
        rec = self.recorder
        log_state = {"on": self.table.request_log, "waiting": len(rec.buffer), "dropped": rec.dropped}
        log_state["sampled_out"] = rec.sampled_out
        return JSONResponse({"routing_table_age_s": age, "request_log": log_state})

    async def relay(self, request: Request) -> Response:
        """Async invocations, files and batches live on the control plane: the call goes
        there as sent (its key decides what it may see), on these paths only."""
        path = request.url.path
        if not RELAYED.match(path):
            return error(404, f"no route {request.method} {path[:200]}", "unknown_url")
        url = self.cfg.control_url.rstrip("/") + path + (f"?{request.url.query}" if request.url.query else "")
        headers = {h: request.headers[h] for h in RELAY_HEADERS if h in request.headers}
        try:
            async with self._session().request(
                request.method,
                url,
                headers=headers,
                data=request.stream() if request.method == "POST" else None,
                timeout=aiohttp.ClientTimeout(total=600.0, connect=5.0),
            ) as r:
                body = await r.read()
                back = {h: r.headers[h] for h in ("retry-after",) if h in r.headers}
                return Response(body, r.status, headers=back, media_type=r.headers.get("content-type"))
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            log.warning("relay to the control plane failed: %s", e)
            return error(503, "the control plane is not reachable; retry later", "control_plane_unavailable", retry_after=5)

    async def unknown(self, request: Request, call: Call) -> Response:
        if request.headers.get(VIA) == "gateway":
            # A call this gateway forwarded came back to it: the ingress does not route the
            # endpoint's prefix yet (HAProxy reloads its routes a moment after Serve's).
            r = error(503, "the endpoint's route is not served yet", "route_not_ready", "service_unavailable")
            r.headers[NO_ROUTE] = "1"
            return r
        return error(
            404,
            f"no route {request.method} {request.url.path[:200]}; the OpenAI routes are {', '.join(OPENAI_ROUTES)} "
            "and GET /v1/models",
            "unknown_url",
        )

    async def _key(self, request: Request, call: Call) -> Response | None:
        """Who calls (noted on ``call``), or the 401 to answer."""
        self.table.start()
        self.admission.start()
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return error(401, "missing API key: send 'Authorization: Bearer <key>'", "invalid_api_key")
        key = key.strip()
        if hmac.compare_digest(key.encode(), self.cfg.token.encode()):  # the dispatcher, for a project
            project = request.headers.get("x-rota-project", "")
            if not project.isdigit():
                return error(401, "the gateway's token speaks for a project: x-rota-project is required", "invalid_api_key")
            # The control plane speaks for the dispatcher ("async") or a signed-in console
            # key, which it names so the request log joins the call to that key.
            key_id, prefix = request.headers.get("x-rota-key-id", ""), request.headers.get("x-rota-key-prefix", "")
            call.project_id, call.key_prefix = int(project), prefix[:16] or "async"
            call.key_id = int(key_id) if key_id.isdigit() else None
            call.background = request.headers.get("x-rota-priority") == "background"
            return None
        info = await self.table.key(key, call.t0)
        if info is None:
            return error(401, "invalid or revoked API key", "invalid_api_key")
        call.project_id, call.key_id, call.key_prefix = info["project_id"], info.get("key_id"), info.get("prefix")
        return None

    async def models(self, request: Request, call: Call) -> Response:
        refused = await self._key(request, call)
        if refused is not None:
            return refused
        data = [
            {
                "id": key,
                "object": "model",
                "created": e.get("created", 0),
                "owned_by": e.get("project") or "rota",
                "status": e["status"],
            }
            for (p, key), e in sorted(self.table.endpoints.items())
            if p == call.project_id
        ]
        return JSONResponse({"object": "list", "data": data})

    async def _read(self, request: Request) -> tuple[dict[str, Any], bytes] | Response:
        """The body (at most ``max_body_bytes``, declared or streamed), parsed: routing
        needs its ``model``, the request log whether it streams."""
        too_large = error(413, f"the request body is over the limit of {self.cfg.max_body_bytes} bytes", "request_too_large")
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.cfg.max_body_bytes):
            return too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.cfg.max_body_bytes:
                return too_large
            chunks.append(chunk)
        body = b"".join(chunks)
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            parsed = None
        if not isinstance(parsed, dict):
            return error(400, "the request body must be a JSON object", "invalid_json")
        model = parsed.get("model")
        if not isinstance(model, str) or not model:
            return error(400, "'model' is required: the routing_key of one of your endpoints", "missing_model", param="model")
        return parsed, body

    def _usage_on_streams(self, call: Call, ep: dict[str, Any], parsed: dict[str, Any], body: bytes) -> bytes:
        """A stream of Rota's vLLM application is asked for its token usage (on its last
        chunk) even when the caller did not ask: the request log needs it; the ``Tap``
        strips it from what the caller gets. A custom application's body is left as sent."""
        if parsed.get("stream") is not True or call.route not in ("/v1/chat/completions", "/v1/completions"):
            return body
        call.stream = True
        if not ep.get("stream_usage"):
            return body
        options = parsed.get("stream_options")
        if options is not None and not isinstance(options, dict):
            return body  # the engine answers that one with a 400
        call.usage_asked = bool(options and options.get("include_usage") is True)
        if call.usage_asked:
            return body
        opening = body.lstrip()
        if "stream_options" not in parsed and opening[:1] == b"{":
            return _WITH_USAGE + opening[1:]  # the usual case: the option in front, the body not encoded again
        return json.dumps({**parsed, "stream_options": {**(options or {}), "include_usage": True}}).encode()

    async def forward(self, request: Request, call: Call) -> Response:
        refused = await self._key(request, call)
        if refused is not None:
            return refused
        read = await self._read(request)
        if isinstance(read, Response):
            return read
        parsed, body = read
        project, model = call.project_id, parsed["model"]
        call.model = model
        assert project is not None
        ep = await self.table.endpoint(project, model, call.t0)
        if ep is None:
            return error(
                404, f"the model {model!r} does not exist or you do not have access to it", "model_not_found", param="model"
            )
        call.endpoint_id = ep.get("id")
        if ep["status"] in DOWN:
            detail = f": {ep['message']}" if ep.get("message") else ""
            return error(503, f"endpoint {model!r} is {ep['status']}{detail}", "endpoint_unavailable", "service_unavailable")
        name, whole = f"{project}/{model}", f"project/{project}"
        limit = ep.get("async_limit") if call.background else ep.get("max_concurrency")
        if not await self.admission.enter(name, limit):
            message = f"endpoint {model!r} is at capacity ({ep['max_concurrency']} requests in flight); retry later"
            return error(429, message, "rate_limit_exceeded", "rate_limit_error", retry_after=1)
        if not await self.admission.enter(whole, self.table.project_limit):
            self.admission.leave(name)
            message = f"this project has {self.table.project_limit} requests in flight, its most at once; retry later"
            return error(429, message, "rate_limit_exceeded", "rate_limit_error", retry_after=1)

        def release() -> None:
            self.admission.leave(name)
            self.admission.leave(whole)

        logged = self.table.logs(call.project_id)
        if logged:
            body = self._usage_on_streams(call, ep, parsed, body)
        if logged and ep.get("content_logging") and self.cfg.content_max_bytes:
            call.content_max = self.cfg.content_max_bytes
            call.request_content = body[: call.content_max].decode("utf-8", "replace")
        call.queue_ms = call.ms()
        try:
            upstream = await self._reach(ep, request, body, call)
        except BaseException:
            release()
            raise
        if isinstance(upstream, Response) or upstream.status == 503:  # no replica in time, or the replica's queue is full
            release()
            if isinstance(upstream, Response):
                return upstream
            upstream.release()
            return error(
                429, f"endpoint {model!r} is at capacity; retry later", "rate_limit_exceeded", "rate_limit_error", retry_after=1
            )
        if not logged:  # the answer's bytes straight through
            return Relay(upstream, None, release)
        tap = Tap(call, upstream.status, upstream.headers.get("content-type", ""), upstream.headers.get(REPLICA_HEADER))

        def done() -> None:
            release()
            record = call.record(upstream.status, None, tap)
            if tap.broken:  # the endpoint's answer broke off half way
                record.update(status=502, error_code="upstream_error")
            elif not tap.finished:  # the caller left before the end
                record.update(status=499, error_code="client_closed_request")
            self._record(record)

        return Relay(upstream, tap, done)

    async def _reach(self, ep: dict[str, Any], request: Request, body: bytes, call: Call) -> Any:
        """Send to a replica of the endpoint, waking it first if it sleeps; retried until a
        replica answers or ``wake_timeout_s`` passes (then a 503 with Retry-After). The
        time spent waiting for a replica to wake is noted on ``call``."""
        url = f"{self.cfg.upstream.rstrip('/')}{ep['route_prefix'].rstrip('/')}{request.url.path}"
        headers = {
            "content-type": request.headers.get("content-type", "application/json"),
            "x-request-id": call.request_id,
            VIA: "gateway",
        }
        if ep.get("token"):
            headers["authorization"] = f"Bearer {ep['token']}"
        started = time.monotonic()
        deadline = started + self.cfg.wake_timeout_s
        awake = ep["status"] not in WAKEABLE
        while time.monotonic() < deadline:
            if not awake:
                call.wake_ms = 0.0  # it waits for a replica: timed below
                awake = await self._wake(ep["app"], deadline)
                continue
            try:
                upstream = await self._session().post(url, headers=headers, data=body, timeout=_FORWARD_TIMEOUT)
                if not _no_replica(upstream):
                    if call.wake_ms is not None:
                        call.wake_ms = round((time.monotonic() - started) * 1000, 3)
                    return upstream
                upstream.release()
            except aiohttp.ClientConnectionError:
                pass
            awake = False  # no replica answered: (re)wake, then retry
            await asyncio.sleep(0.2)
        if call.wake_ms is not None:
            call.wake_ms = round((time.monotonic() - started) * 1000, 3)
        return error(
            503,
            f"endpoint {ep['routing_key']!r} did not become ready within {self.cfg.wake_timeout_s:g}s; it is waking up, "
            "retry later",
            "endpoint_waking",
            "service_unavailable",
            retry_after=self.cfg.retry_after_s,
        )

    async def _wake(self, app: str, deadline: float) -> bool:
        """Ask Ray Serve for a replica: a handle call queues until one is up (scale from zero)."""
        try:
            await asyncio.wait_for(self._wake_app(app), timeout=max(0.0, deadline - time.monotonic()))
            return True
        except asyncio.TimeoutError:
            return False
        except Exception as e:  # e.g. an application without `wake`: a replica answered, or try anyway
            log.info("waking %s: %s: %s", app, type(e).__name__, e)
            await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            return True


class Relay(StreamingResponse):
    """The endpoint's answer, passed through as it comes (through the request log's
    ``Tap``). Its connection and admission slot are given back, and its record made,
    whatever happens, the client going away before the first byte included (a
    generator's own ``finally`` would never run then)."""

    def __init__(self, upstream: Any, tap: Tap | None, done: Callable[[], None]):
        headers = {k: v for k, v in upstream.headers.items() if k.lower() in PASS_BACK}
        super().__init__(upstream.content.iter_any(), status_code=upstream.status, headers=headers)
        self.upstream, self.tap, self.done = upstream, tap, done

    async def stream_response(self, send: Any) -> None:
        """Each chunk through the tap in line (no generator between the upstream and the
        caller). An error reading the upstream (or in the tap) marks the answer broken, one
        sending it not; it is finished once its last byte is sent."""
        tap = self.tap
        if tap is None:
            await super().stream_response(send)
            return
        chunks = aiter(self.body_iterator)
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        while True:
            try:
                out = tap.feed(await anext(chunks))
            except StopAsyncIteration:
                break
            except Exception:
                tap.broken = True
                raise
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
        await send({"type": "http.response.body", "body": tap.close(), "more_body": False})
        tap.finished = True  # its last byte reached the caller

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.upstream.release()
            self.done()


def _replica_name() -> str:
    try:
        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # outside a Serve replica (tests)
        return "gateway"


def _shared_pool() -> PoolClient:
    """The admission pool of this gateway application (a pool of its own outside Serve)."""
    try:
        app = serve.get_replica_context().app_name
    except Exception:
        log.info("not in a Ray Serve replica: admission counts are this process's own")
        return LocalPool()
    return RayPool(f"rota-admission-v{ADMISSION_VERSION}-{app}")


async def _wake_through_handle(app: str) -> Any:
    return await serve.get_app_handle(app).wake.remote()


def _no_replica(r: Any) -> bool:
    """The Serve ingress had nowhere to send it: the endpoint has no ready replica (yet).

    Ray Serve answers 404 for a route it does not (yet) serve and HAProxy 503 without a
    ``content-type`` when a backend has no server; a call HAProxy does not route yet lands
    on the gateway itself (at ``/``), which says so (``x-rota-no-route``); a replica's own
    503 (its queue is full) is JSON and is passed on as a 429.
    """
    if r.headers.get(NO_ROUTE):  # the call came back to the gateway: no route to the endpoint yet
        return True
    return r.status in (502, 504) or (r.status in (404, 503) and "json" not in r.headers.get("content-type", ""))


# No total timeout: a generation streams for as long as it takes.
_FORWARD_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=5.0)


class _Http:
    """One connection pool per replica, created inside its event loop on first use."""

    _session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60), auto_decompress=False
            )
        return self._session


@serve.deployment(
    ray_actor_options={"num_cpus": 0},
    # Streams in flight finish first, then __del__ sends the request records it holds.
    graceful_shutdown_timeout_s=120,
    # The gateway holds requests while endpoints wake and streams their tokens: its own
    # concurrency is bounded per endpoint, not here.
    max_ongoing_requests=100_000,
    # Every call is in Rota's request log: Ray Serve's access log line per call (measured:
    # ~3 % of the replica's samples under load) would say it twice.
    logging_config={"enable_access_log": False},
)
@serve.ingress()
class Gateway:
    async def __init__(self, config: dict[str, Any]):
        self._app = GatewayApp(GatewayConfig.model_validate(config))
        pool = self._app.admission.pool
        if isinstance(pool, RayPool):
            await pool.connect()  # a new pool's warm-up runs now, not on the first request

    def __serve_build_asgi_app__(self) -> Any:
        return self._app.asgi

    async def __del__(self) -> None:
        # Ray Serve calls this once the replica's requests are done (a redeploy, a scale down).
        await self._app.close()


def app(args: dict[str, Any]) -> Any:
    """Ray Serve application builder: ``gateway:app``."""
    return Gateway.bind(GatewayConfig.model_validate(args).model_dump())
