"""Dedicated endpoints on a real Ray Serve, called through the one OpenAI base URL.

The endpoint application is tests/apps/openai_echo.py (OpenAI-shaped, no engine), from
the test template catalog; the end-to-end tier does the same with vLLM.
"""

import json
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest

from support.endpoints import TEST_TEMPLATES, chat, new_key, status_is, wait_endpoint, wait_routed
from support.procs import wait_until


@pytest.fixture
def srv(servers):
    return servers(ROTA_TEMPLATES_PATH=str(TEST_TEMPLATES), ROTA_WAKE_TIMEOUT_S="60", ROTA_GATEWAY_REFRESH_S="0.5")


def create(srv, **body) -> dict:
    r = srv.api.post("/endpoints", json={"template": "echo-chat", **body})
    assert r.status_code == 201, r.text
    return r.json()


def replica_of(resp: httpx.Response) -> str:
    return resp.json()["choices"][0]["message"]["content"].split(":")[0]


def event_kinds(srv, ref) -> list[str]:
    return [e["kind"] for e in srv.api.get(f"/endpoints/{ref}/events").json()]


def test_lifecycle_through_the_base_url(srv, cluster):
    ep = create(srv, name="chat", routing_key="chat-model")
    assert ep["status"] == "INITIALIZING" and ep["phase"] == "REQUESTING_RESOURCES"
    assert ep["base_url"] == f"{cluster.serve_url}/v1"
    ep = wait_endpoint(srv, "chat", status_is("RUNNING"), what="READY")
    assert ep["phase"] == "READY" and ep["replicas"]["running"] == 1
    first = ep["replicas"]["ids"][0]

    # The openai client, pointed at the base URL, routes by model.
    client = openai.OpenAI(base_url=ep["base_url"], api_key=srv.admin_key, max_retries=0)
    out = wait_until(
        lambda: client.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": "hello"}]),
        30,
        what="first chat through the gateway",
    )
    assert out.choices[0].message.content == f"{first}: hello"
    stream = client.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": "a b c"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream).split() == [f"{first}:", "a", "b", "c"]
    assert [m.id for m in client.models.list().data] == ["chat-model"]

    # Scaling changes in place: the first replica keeps serving, nothing restarts.
    r = srv.api.patch("/endpoints/chat", json={"scaling": {"replicas": 2}})
    assert r.status_code == 200 and r.json()["scaling"]["replicas"] == 2 and r.json()["engine"]["max_batch_size"] == 8
    ep = wait_endpoint(srv, "chat", lambda e: e["status"] == "RUNNING" and e["replicas"]["running"] == 2, what="2 replicas")
    assert first in ep["replicas"]["ids"]
    assert "UPDATING" not in [e["data"].get("to") for e in srv.api.get("/endpoints/chat/events").json()]

    # An engine change rolls the replicas (UPDATING), then serves again.
    r = srv.api.patch("/endpoints/chat", json={"engine": {"max_batch_size": 4}})
    assert r.status_code == 200 and r.json()["engine"]["max_batch_size"] == 4
    ep = wait_endpoint(
        srv,
        "chat",
        lambda e: e["status"] == "RUNNING" and first not in e["replicas"]["ids"] and e["replicas"]["running"] == 2,
        what="rolled",
    )
    tos = [e["data"].get("to") for e in srv.api.get("/endpoints/chat/events").json() if e["kind"] == "status"]
    assert "UPDATING" in tos

    # Stop releases the replicas: the application leaves Ray Serve; the base URL says 503.
    srv.api.post("/endpoints/chat/stop").raise_for_status()
    wait_endpoint(srv, "chat", status_is("STOPPED"), what="STOPPED")
    assert "ep-" + str(ep["id"]) not in cluster.applications()
    r = chat(cluster.serve_url, srv.admin_key, "chat-model")
    assert r.status_code == 503 and r.json()["error"]["code"] == "endpoint_unavailable"
    srv.api.post("/endpoints/chat/start").raise_for_status()
    wait_endpoint(srv, "chat", status_is("RUNNING"), what="running again")
    assert wait_until(lambda: chat(cluster.serve_url, srv.admin_key, "chat-model").status_code == 200, 30, what="serving again")

    # Delete is permanent: the application goes, then the endpoint.
    assert srv.api.delete("/endpoints/chat").status_code == 204
    wait_until(lambda: srv.api.get("/endpoints/chat").status_code == 404, 60, what="endpoint gone")
    assert "ep-" + str(ep["id"]) not in cluster.applications()
    r = chat(cluster.serve_url, srv.admin_key, "chat-model")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    # The row is gone; its events stay, in the project's event log.
    events = srv.api.get("/events", params={"endpoint_name": "chat"}).json()
    assert "deleted" in [e["kind"] for e in events]
    assert [e["data"]["to"] for e in events if e["kind"] == "status"][-2:] == ["TERMINATING", "TERMINATED"]


def test_a_sleeping_endpoint_woken_by_a_request_says_503_past_the_wake_timeout_then_serves(servers, cluster):
    srv = servers(ROTA_TEMPLATES_PATH=str(TEST_TEMPLATES), ROTA_WAKE_TIMEOUT_S="3", ROTA_GATEWAY_REFRESH_S="0.5")
    r = srv.api.post(
        "/endpoints",
        json={
            "template": "echo-chat",
            "name": "slow",
            "routing_key": "slow",
            "flavor": "slow-start",
            "scaling": {"min_replicas": 0, "max_replicas": 1, "cooldown_period_s": 1},
        },
    )
    assert r.status_code == 201, r.text
    wait_endpoint(srv, "slow", status_is("SLEEPING"), timeout=120, what="SLEEPING")
    r = chat(cluster.serve_url, srv.admin_key, "slow")
    assert r.status_code == 503, r.text
    assert int(r.headers["Retry-After"]) > 0 and r.json()["error"]["code"] == "endpoint_waking"
    # The request woke it all the same: once up, it answers (the e2e tier does this with vLLM).
    ok = wait_until(
        lambda: x if (x := chat(cluster.serve_url, srv.admin_key, "slow", "wake up")).status_code == 200 else None,
        60,
        what="awake",
    )
    assert ok.json()["choices"][0]["message"]["content"].endswith("wake up")
    wait_endpoint(srv, "slow", status_is("RUNNING"), what="RUNNING after the wake")
    tos = [e["data"].get("to") for e in srv.api.get("/endpoints/slow/events").json() if e["kind"] == "status"]
    tos = [s for i, s in enumerate(tos) if i == 0 or tos[i - 1] != s]  # phase changes repeat a status
    assert tos[-3:] == ["SLEEPING", "AWAKING", "RUNNING"], tos


def test_in_flight_request_survives_a_rescale(srv, cluster):
    create(srv, name="steady", routing_key="steady")
    wait_endpoint(srv, "steady", status_is("RUNNING"), what="READY")
    wait_routed(cluster.serve_url, srv.admin_key, "steady")
    result = {}
    t = threading.Thread(target=lambda: result.update(r=chat(cluster.serve_url, srv.admin_key, "steady", "slow", delay_s=4)))
    t.start()
    time.sleep(1)
    srv.api.patch("/endpoints/steady", json={"scaling": {"min_replicas": 1, "max_replicas": 3}}).raise_for_status()
    t.join(30)
    assert result["r"].status_code == 200 and result["r"].json()["choices"][0]["message"]["content"].endswith("slow")


def test_beyond_the_queue_limit_is_a_429(srv, cluster):
    create(srv, name="narrow", routing_key="narrow", engine={"max_batch_size": 1, "max_queued_requests": 0})
    wait_endpoint(srv, "narrow", status_is("RUNNING"), what="READY")
    wait_routed(cluster.serve_url, srv.admin_key, "narrow")
    held = threading.Thread(target=lambda: chat(cluster.serve_url, srv.admin_key, "narrow", delay_s=3))
    held.start()
    time.sleep(0.5)
    r = chat(cluster.serve_url, srv.admin_key, "narrow")
    held.join(30)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1" and r.json()["error"]["code"] == "rate_limit_exceeded"
    assert chat(cluster.serve_url, srv.admin_key, "narrow").status_code == 200  # capacity is back


POOL_SNAPSHOT = """
import json, sys, ray
ray.init(address=sys.argv[1], log_to_driver=False)
pool = ray.get_actor("rota-admission-v1-rota-gateway", namespace="rota")
print(json.dumps(ray.get(pool.snapshot.remote())))
"""


def pool_snapshot(cluster) -> dict:
    """The gateway's admission pool, read by a Ray driver: slots held, the most ever held, asks per replica."""
    out = subprocess.run(
        [sys.executable, "-c", POOL_SNAPSHOT, cluster.gcs_address],
        env=cluster.ray_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_two_gateway_replicas_never_admit_more_than_an_endpoints_limit_together(servers, cluster):
    srv = servers(
        ROTA_TEMPLATES_PATH=str(TEST_TEMPLATES),
        ROTA_GATEWAY_REFRESH_S="0.5",
        ROTA_GATEWAY_MIN_REPLICAS="2",
        ROTA_GATEWAY_MAX_REPLICAS="2",
    )
    # One replica taking 2 at once, a queue of 1: the gateway admits 3 at once.
    create(srv, name="shared", routing_key="shared", engine={"max_batch_size": 2, "max_queued_requests": 1})
    wait_endpoint(srv, "shared", status_is("RUNNING"), what="READY")

    wait_until(lambda: len(cluster.gateway_replicas()) == 2, 120, 0.5, what="two gateway replicas")
    wait_routed(cluster.serve_url, srv.admin_key, "shared")
    time.sleep(1.5)  # the slots of that call go back to the pool (two sync periods)
    before = pool_snapshot(cluster)["asks"]

    answers: list[httpx.Response] = []
    calls = [
        threading.Thread(target=lambda: answers.append(chat(cluster.serve_url, srv.admin_key, "shared", delay_s=3)))
        for _ in range(16)
    ]
    for t in calls:
        t.start()
    for t in calls:
        t.join(60)
    # Every admitted call was held 3 s and all were sent at once: they overlapped. Every
    # refusal is the gateways' own ("requests in flight"): none got as far as the replica's
    # queue, which would refuse what the gateways let through beyond the limit.
    statuses = [r.status_code for r in answers]
    assert 1 <= statuses.count(200) <= 3 and statuses.count(429) == 16 - statuses.count(200), statuses
    assert all("requests in flight" in r.json()["error"]["message"] for r in answers if r.status_code == 429)

    pool = pool_snapshot(cluster)
    name = next(n for n in pool["peak"] if n.endswith("/shared"))
    assert pool["peak"][name] <= 3  # never more slots held at once, by both replicas together
    asked = [r for r, n in pool["asks"].items() if n > before.get(r, 0)]
    assert len(asked) == 2  # both replicas took calls and asked the pool


def test_keys_and_projects(srv, cluster):
    create(srv, name="mine", routing_key="mine")
    wait_endpoint(srv, "mine", status_is("RUNNING"), what="READY")
    wait_routed(cluster.serve_url, srv.admin_key, "mine")

    # No key, a wrong key: 401 on the control plane and at the base URL.
    assert httpx.get(f"{srv.url}/api/v1/endpoints").status_code == 401
    assert httpx.get(f"{srv.url}/api/v1/tasks", headers={"Authorization": "Bearer nope"}).status_code == 401
    r = httpx.post(f"{cluster.serve_url}/v1/chat/completions", json={"model": "mine", "messages": []})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"

    # Another project's key sees none of ours: 404 (not 403: existence is not revealed).
    other = new_key(srv, "ci", project="team-b")
    h = {"Authorization": f"Bearer {other['key']}"}
    assert httpx.get(f"{srv.url}/api/v1/endpoints/mine", headers=h).status_code == 404
    assert httpx.get(f"{srv.url}/api/v1/endpoints", headers=h).json()["total"] == 0
    # (a new key works at once, or within the refresh period if unknown keys just pulled the table)
    wait_until(lambda: chat(cluster.serve_url, other["key"], "mine").status_code == 404, 5, what="404 for the other project")
    assert httpx.get(f"{cluster.serve_url}/v1/models", headers=h).json()["data"] == []

    # Every path of the endpoint's own prefix needs the endpoint's own token: not a user key,
    # not the gateway's token, not another endpoint's.
    url = srv.api.get("/endpoints/mine").json()["url"]
    tokens = {"none": None, "admin key": srv.admin_key, "gateway token": srv.gateway_token}
    for what, tok in tokens.items():
        headers = {"Authorization": f"Bearer {tok}"} if tok else {}
        for method, path in (
            ("POST", "/v1/chat/completions"),
            ("POST", "/invocations"),
            ("GET", "/v1/models"),
            ("GET", "/tokenize"),
            ("GET", "/metrics"),
        ):
            r = httpx.request(method, url + path, json={"model": "mine", "messages": []}, headers=headers)
            assert r.status_code == 401, (what, path, r.status_code)

    # Keys are listed by prefix only; a revoked key stops working.
    mine = new_key(srv, "app")
    wait_until(lambda: chat(cluster.serve_url, mine["key"], "mine").status_code == 200, 5, what="a new key works")
    listed = srv.api.get("/keys").json()
    assert all("key" not in k and len(k["prefix"]) == 12 for k in listed)
    srv.api.delete(f"/keys/{mine['id']}").raise_for_status()
    assert httpx.get(f"{srv.url}/api/v1/endpoints", headers={"Authorization": f"Bearer {mine['key']}"}).status_code == 401
    wait_until(lambda: chat(cluster.serve_url, mine["key"], "mine").status_code == 401, 5, what="revoked at the gateway")


def test_a_task_drives_an_endpoints_bounds(srv, cluster):
    from support.tasks import local_in, wait_task, zone_near_noon

    create(srv, name="driven", routing_key="driven", scaling={"min_replicas": 1, "max_replicas": 1})
    wait_endpoint(srv, "driven", status_is("RUNNING"), what="READY")
    tz = zone_near_noon()
    when = local_in(tz, 3).strftime("%Y-%m-%dT%H:%M:%S")
    r = srv.api.post(
        "/tasks",
        json={
            "name": "burst",
            "endpoint": "driven",
            "type": "one_off",
            "timezone": tz,
            "schedule": [{"time": when, "min_replicas": 2, "max_replicas": 3}],
        },
    )
    assert r.status_code == 201, r.text
    assert not r.json()["owns_endpoint"] and r.json()["endpoint"]["routing_key"] == "driven"
    srv.api.post("/tasks/burst/activate").raise_for_status()
    wait_task(srv, "burst", lambda t: t["status"] == "completed", what="fired")
    ep = wait_endpoint(srv, "driven", lambda e: e["replicas"]["running"] >= 2, what="scheduled bounds applied")
    assert (ep["replicas"]["min"], ep["replicas"]["max"], ep["replicas"]["source"]) == (2, 3, "schedule")
    assert "scheduled" in event_kinds(srv, "driven")
    app = cluster.applications()[f"ep-{ep['id']}"]
    cfg = app["deployed_app_config"]["deployments"][0]["autoscaling_config"]
    assert (cfg["min_replicas"], cfg["max_replicas"]) == (2, 3)
    # Deleting the endpoint while a task drives it is refused; deleting the task hands bounds back.
    assert srv.api.delete("/endpoints/driven").status_code == 409
    srv.api.delete("/tasks/burst").raise_for_status()
    ep = srv.api.get("/endpoints/driven").json()
    assert (ep["replicas"]["min"], ep["replicas"]["max"], ep["replicas"]["source"]) == (1, 1, "scaling")


def test_the_base_url_keeps_serving_while_the_control_plane_is_down(servers, cluster, tmp_path):
    home = tmp_path / "rota"
    env = {"ROTA_TEMPLATES_PATH": str(TEST_TEMPLATES), "ROTA_GATEWAY_REFRESH_S": "0.5"}
    srv = servers(home, **env)
    create(srv, name="durable", routing_key="durable")
    wait_endpoint(srv, "durable", status_is("RUNNING"), what="READY")
    key = srv.admin_key
    wait_routed(cluster.serve_url, key, "durable")
    srv.kill()  # SIGKILL: the gateway keeps its last routing table
    for _ in range(3):
        assert chat(cluster.serve_url, key, "durable").status_code == 200
        time.sleep(0.5)
    srv2 = servers(home, **env)  # same store: the endpoint, the key and its events are all there
    ep = wait_endpoint(srv2, "durable", status_is("RUNNING"), what="adopted")
    assert srv2.admin_key == key and ep["routing_key"] == "durable"
    assert chat(cluster.serve_url, key, "durable").status_code == 200
    assert event_kinds(srv2, "durable")[0] == "created"
