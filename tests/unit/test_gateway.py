"""The OpenAI base URL (serve_apps/gateway.py) with Starlette's test client: auth, routing
by project and model, the route allow-list, wake, 429, 503 + Retry-After, body limits.

The two fakes stand where Ray is: the upstream (Ray Serve's HTTP port) and the wake call
(a deployment handle). The routing table comes from a fake control plane."""

import asyncio

import pytest

from rota.domain.status import EndpointStatus
from support.gateway import KEY_A, KEY_B, ControlPlane, Reply, chat, gateway, h, running_gateway


@pytest.fixture
def gw():
    with running_gateway() as client:
        yield client


def test_a_key_reaches_its_projects_endpoint_with_that_endpoints_token(gw):
    assert chat(gw).json() == {"ok": True}
    assert chat(gw, KEY_B).status_code == 200
    (url_a, headers_a), (url_b, headers_b) = gw.upstream.sent
    assert url_a.endswith("/ep/1/v1/chat/completions") and headers_a["authorization"] == "Bearer tok-1"
    assert url_b.endswith("/ep/2/v1/chat/completions") and headers_b["authorization"] == "Bearer tok-2"
    assert [m["id"] for m in gw.get("/v1/models", headers={"Authorization": f"Bearer {KEY_A}"}).json()["data"]] == ["chat"]


def test_no_key_a_wrong_key_another_projects_model(gw):
    assert chat(gw, None).json()["error"]["code"] == "invalid_api_key"
    assert chat(gw, "rota_nope").status_code == 401
    gw.cp.endpoints = gw.cp.endpoints[:1]
    gw.app.table.endpoints.pop((2, "chat"), None)
    r = chat(gw, KEY_B)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert all("/ep/1/" not in url for url, _ in gw.upstream.sent)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/%2e%2e/%2e%2e/%2e%2e/ep/1/invocations",
        "/v1/../ep/1/invocations",
        "/v1/tokenize",
        "/ep/1/v1/chat/completions",
        "/v1/chat/completions/../../ep/1/invocations",
        "/v1//chat/completions",
    ],
)
def test_only_the_known_openai_routes_are_forwarded(gw, path):
    r = gw.post(path, content=b'{"model": "chat"}', headers={"Authorization": f"Bearer {KEY_B}"})
    assert r.status_code == 404 and r.json()["error"]["code"] in ("unknown_url", "model_not_found"), (path, r.text)
    assert gw.upstream.sent == []


def test_unknown_keys_pull_the_table_at_most_once_per_interval(gw):
    pulls = gw.cp.pulls
    for i in range(30):
        assert chat(gw, f"rota_random-{i}").status_code == 401
    assert gw.cp.pulls - pulls <= 1


def test_a_new_key_works_at_once_unless_unknown_keys_just_pulled(gw):
    gw.app.table._forced = float("-inf")  # no pull for an unknown key yet
    gw.cp.keys[h("rota_new")] = 1
    assert chat(gw, "rota_new").status_code == 200
    gw.cp.keys[h("rota_newer")] = 1
    assert chat(gw, "rota_newer").status_code == 401  # a pull for an unknown key just happened
    asyncio.run(gw.app.table.refresh())  # the next periodic pull (every refresh_s)
    assert chat(gw, "rota_newer").status_code == 200


def test_bad_bodies_are_4xx(gw):
    headers = {"Authorization": f"Bearer {KEY_A}", "content-type": "application/json"}
    deep = b'{"model": "chat", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert gw.post("/v1/chat/completions", content=deep[:4000], headers=headers).status_code == 400
    r = gw.post("/v1/chat/completions", content=b'{"model": "chat", "x": "' + b"a" * 5000 + b'"}', headers=headers)
    assert r.status_code == 413 and "4096" in r.json()["error"]["message"]
    for body in (b"[1]", b"{nope", b'{"model": 7}'):
        assert gw.post("/v1/chat/completions", content=body, headers=headers).status_code == 400


def test_a_sleeping_endpoint_is_woken_then_served(gw):
    gw.cp.endpoints[0]["status"] = "SLEEPING"
    gw.app.table.endpoints[(1, "chat")]["status"] = "SLEEPING"
    gw.upstream.replies = [(503, None, b"no server")]  # HAProxy: no replica yet
    assert chat(gw).status_code == 200
    assert gw.woken == ["ep-1", "ep-1"] and len(gw.upstream.sent) == 2


def test_an_application_without_wake_is_still_served_once_a_replica_answers(gw):
    async def no_wake(app):
        raise AttributeError("'Echo' object has no attribute 'wake'")  # what the replica says

    gw.app._wake_app = no_wake
    gw.app.table.endpoints[(1, "chat")]["status"] = "SLEEPING"
    assert chat(gw).status_code == 200 and len(gw.upstream.sent) == 1


def test_a_wake_that_does_not_come_is_a_503_with_retry_after(gw):
    gw.app.table.endpoints[(1, "chat")]["status"] = "SLEEPING"
    gw.upstream.replies = [(503, None, b"")] * 100
    r = chat(gw)
    assert r.status_code == 503 and r.headers["Retry-After"] == "5" and r.json()["error"]["code"] == "endpoint_waking"


def test_down_endpoints_are_503_and_a_full_replica_queue_is_a_429(gw):
    gw.app.table.endpoints[(1, "chat")]["status"] = "STOPPED"
    assert chat(gw).json()["error"]["code"] == "endpoint_unavailable"
    gw.app.table.endpoints[(1, "chat")]["status"] = "RUNNING"
    gw.upstream.replies = [(503, "application/json", b'{"error": "queue full"}')]
    r = chat(gw)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert gw.app.admission.inflight["1/chat"] == 0


def test_admission_beyond_capacity_is_a_429(gw):
    adm = gw.app.admission
    assert gw.portal.call(adm.enter, "1/chat", 2) and gw.portal.call(adm.enter, "1/chat", 2)
    r = chat(gw)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
    adm.leave("1/chat")
    assert chat(gw).status_code == 200 and adm.inflight["1/chat"] == 1


def test_one_projects_calls_in_flight_stop_at_its_limit_whatever_its_endpoints_say(gw):
    """ROTA_GATEWAY_PROJECT_MAX_INFLIGHT, from the routing table: a project whose endpoints
    allow a million calls each still never takes the gateway's whole room."""
    gw.cp.project_max_inflight = 2
    asyncio.run(gw.app.table.refresh())
    adm = gw.app.admission
    assert gw.portal.call(adm.enter, "project/1", 2) and gw.portal.call(adm.enter, "project/1", 2)  # two calls elsewhere
    r = chat(gw)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1", r.text
    assert "this project has 2 requests in flight" in r.json()["error"]["message"]
    assert adm.inflight["1/chat"] == 0  # the endpoint's slot given back
    assert chat(gw, KEY_B).status_code == 200  # another project has its own room
    adm.leave("project/1")
    assert chat(gw).status_code == 200 and adm.inflight["project/1"] == 1 and adm.inflight["1/chat"] == 0


def test_the_gateways_statuses_are_the_domains():
    assert {s.value for s in EndpointStatus.wakeable()} == gateway.WAKEABLE
    assert {s.value for s in EndpointStatus.down()} == gateway.DOWN
    assert gateway.WAKEABLE | gateway.DOWN | {"RUNNING"} == {s.value for s in EndpointStatus}


def test_routing_table_keeps_the_last_one_when_the_control_plane_is_down():
    async def run():
        cp = ControlPlane()
        table = gateway.RoutingTable(0.01, cp)
        await table.refresh()

        async def down():
            raise gateway.aiohttp.ClientConnectionError("refused")

        table.fetch = down
        await table.refresh()
        return table

    table = asyncio.run(run())
    assert (1, "chat") in table.endpoints and table.keys


def test_a_streamed_body_over_the_limit_is_a_413_before_it_is_all_read(gw):
    def body():
        yield b'{"model": "chat", "x": "'
        for _ in range(100):
            yield b"a" * 1000
        yield b'"}'

    r = gw.post("/v1/chat/completions", content=body(), headers={"Authorization": f"Bearer {KEY_A}"})
    assert r.status_code == 413 and gw.upstream.sent == []


def test_a_client_gone_before_the_first_byte_gives_its_slot_back():
    released = []
    reply = Reply(200, "text/event-stream", b"data: x\n\n")
    tap = gateway.Tap(gateway.Call("r1", "/v1/chat/completions"), 200, "text/event-stream", None)
    relay = gateway.Relay(reply, tap, lambda: released.append(True))

    async def run():
        async def receive():  # the client is already gone: the body is never streamed
            return {"type": "http.disconnect"}

        async def send(message):
            await asyncio.sleep(0.01)

        await relay({"type": "http", "asgi": {"spec_version": "2.3"}}, receive, send)

    asyncio.run(run())
    assert released == [True] and reply.released


def test_a_call_the_ingress_sends_back_to_the_gateway_waits_for_the_route(gw):
    """HAProxy routes a new endpoint's prefix a moment after Serve reports it: meanwhile the
    forwarded call lands on the gateway itself, which says so; the call is sent again."""
    looped = gw.post("/ep/1/v1/chat/completions", json={}, headers={"x-rota-via": "gateway"})
    assert looped.status_code == 503 and looped.headers["x-rota-no-route"] == "1"
    assert gw.post("/ep/1/v1/chat/completions", json={}).status_code == 404  # a caller's own call: no such route
    gw.upstream.replies = [(looped.status_code, "application/json", looped.content, {"x-rota-no-route": "1"})]
    r = chat(gw)
    assert r.status_code == 200 and len(gw.upstream.sent) == 2 and gw.upstream.sent[0][1]["x-rota-via"] == "gateway"
