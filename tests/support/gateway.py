"""The gateway (serve_apps/gateway.py) with fakes where Ray and the control plane are:
the upstream (Ray Serve's HTTP port), the wake call (a deployment handle), the routing
table and where request records are shipped."""

import hashlib
import importlib.util
import json
import sys
from contextlib import contextmanager

from ray.serve._private.http_util import RequestIdMiddleware
from starlette.testclient import TestClient

from support.procs import REPO

spec = importlib.util.spec_from_file_location("rota_gateway_under_test", REPO / "serve_apps" / "gateway.py")
gateway = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = gateway
spec.loader.exec_module(gateway)

KEY_A, KEY_B = "rota_key-of-project-a", "rota_key-of-project-b"


def h(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Upstream:
    """Ray Serve's HTTP port: answers per route prefix, records what it was sent."""

    def __init__(self):
        self.sent: list[tuple[str, dict]] = []
        self.bodies: list[bytes] = []
        self.replies: list = []  # (status, content-type, body) to give, in order; then 200 JSON
        self.relayed: list[tuple[str, str, dict]] = []
        self.relayed_bodies: list[bytes] = []

    def __call__(self):
        return self

    async def post(self, url, headers, data, timeout):
        self.sent.append((url, headers))
        self.bodies.append(data)
        reply = self.replies.pop(0) if self.replies else (200, "application/json", b'{"ok": true}')
        return Reply(*reply)

    def get(self, *a, **kw):  # the routing table is fetched with the fake below
        raise AssertionError("unexpected GET upstream")

    def request(self, method, url, headers, data, timeout):
        """A call relayed to the control plane (async invocations, files, batches)."""
        self.relayed.append((method, url, headers))
        upstream = self

        class Answer:
            status, headers = 202, {"content-type": "application/json"}

            async def read(self):
                if data is not None:
                    upstream.relayed_bodies.append(b"".join([c async for c in data]))
                return b'{"id": "async_1", "status": "queued"}'

        class Context:
            async def __aenter__(self):
                return Answer()

            async def __aexit__(self, *exc):
                return False

        return Context()


class Reply:
    """An upstream answer: ``body`` bytes, or a list of chunks sent one by one."""

    def __init__(self, status, ctype, body, headers=None):
        self.status, self.body, self.released = status, body, False
        self.headers = {**({"content-type": ctype} if ctype else {}), **(headers or {})}
        self.content = self

    async def iter_any(self):
        for chunk in self.body if isinstance(self.body, list) else [self.body]:
            yield chunk

    def release(self):
        self.released = True


class ControlPlane:
    def __init__(self):
        self.keys = {h(KEY_A): 1, h(KEY_B): 2}
        self.key_ids = {h(KEY_A): 11, h(KEY_B): 22}
        self.endpoints = [
            {
                "id": 1,
                "stream_usage": True,  # Rota's vLLM application
                "routing_key": "chat",
                "project_id": 1,
                "project": "a",
                "app": "ep-1",
                "route_prefix": "/ep/1",
                "status": "RUNNING",
                "token": "tok-1",
                "max_concurrency": 2,
                "message": None,
            },
            {
                "id": 2,
                "routing_key": "chat",
                "project_id": 2,
                "project": "b",
                "app": "ep-2",
                "route_prefix": "/ep/2",
                "status": "RUNNING",
                "token": "tok-2",
                "max_concurrency": 2,
                "message": None,
            },
        ]
        self.request_log = True  # ROTA_REQUEST_LOG
        self.unlogged: list[int] = []  # projects whose request_log is off
        self.project_max_inflight: int | None = None
        self.pulls = 0

    async def __call__(self):
        self.pulls += 1
        keys = [{"hash": k, "project_id": p, "key_id": self.key_ids.get(k), "prefix": f"rota_{p}"} for k, p in self.keys.items()]
        return {
            "keys": keys,
            "endpoints": self.endpoints,
            "request_log": self.request_log,
            "unlogged_projects": self.unlogged,
            "project_max_inflight": self.project_max_inflight,
        }


def chat(gw, key=KEY_A, model="chat", path="/v1/chat/completions", json=None, headers=None, **kw):
    sent = {"Authorization": f"Bearer {key}"} if key else {}
    body = json if json is not None else {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return gw.post(path, json=body, headers={**sent, **(headers or {})}, **kw)


def behind_serve(asgi):
    """The app behind Ray Serve's own request-id middleware (for HTTP; Serve runs no lifespan through it)."""
    with_ids = RequestIdMiddleware(asgi)

    async def app(scope, receive, send):
        return await (with_ids if scope["type"] == "http" else asgi)(scope, receive, send)

    return app


def unpacked(ship):
    """A recorder's ``send`` (one JSON body per batch) for ``ship(records, dropped)``."""

    async def send(batch: bytes):
        body = json.loads(batch)
        return await ship(body["records"], body["dropped"])

    return send


@contextmanager
def running_gateway(pool=None, **config):
    woken = []

    async def wake(app):
        woken.append(app)
        return "replica-1"

    shipped: list[dict] = []

    async def ship(records, dropped):
        shipped.extend(records)

    defaults = {"control_url": "http://cp", "token": "gw", "refresh_s": 30, "wake_timeout_s": 1.0, "max_body_bytes": 4096}
    cfg = gateway.GatewayConfig(**{**defaults, **config})
    upstream, cp = Upstream(), ControlPlane()
    app = gateway.GatewayApp(cfg, session=upstream, wake=wake, ship=unpacked(ship), pool=pool)
    app.table.fetch = cp
    # Behind Ray Serve's own request-id middleware, as in a Serve replica: it gives every
    # request an x-request-id (the caller's or a new one) and returns it on the answer.
    with TestClient(behind_serve(app.asgi)) as client:
        client.upstream, client.cp, client.woken, client.app, client.shipped = upstream, cp, woken, app, shipped
        assert chat(client).status_code == 200  # the table is loaded
        upstream.sent.clear()
        upstream.bodies.clear()
        app.recorder.buffer.clear()
        yield client
