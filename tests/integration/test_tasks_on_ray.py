"""Tasks firing against a real Ray Serve: deploy, in-place rescale, failure, teardown."""

import httpx

from support.procs import wait_until
from support.tasks import (
    endpoint_kinds,
    hms,
    local_in,
    route_json,
    running_with,
    start_one_off,
    task_body,
    wait_task,
    zone_near_noon,
)


def test_one_off_fires_and_deploys(servers, cluster):
    srv = servers()
    tz = zone_near_noon()
    when = local_in(tz, 4).strftime("%Y-%m-%dT%H:%M:%S")
    t = srv.api.post(
        "/tasks",
        json=task_body(
            "it-once", "one_off", tz, [{"time": when, "min_replicas": 1, "max_replicas": 1}], args={"greeting": "bonjour"}
        ),
    ).json()
    assert t["status"] == "idle"
    srv.api.post(f"/tasks/{t['id']}/activate").raise_for_status()
    t = wait_task(srv, t["id"], lambda t: t["status"] == "completed" and running_with(1)(t), what="one-off deployed")
    reply = route_json(f"{srv.api.get('/endpoints/it-once').json()['url']}/hello")
    assert reply["greeting"] == "bonjour" and reply["replica"] in t["endpoint"]["replicas"]["ids"]
    ev = srv.api.get(f"/tasks/{t['id']}/events").json()
    assert [e["kind"] for e in ev] == ["created", "activated", "fired", "completed"]
    assert 0 <= ev[2]["data"]["lateness_ms"] < 1000
    assert endpoint_kinds(srv, "it-once")[:3] == ["created", "scheduled", "deploying"]
    assert t["last_run"]["trigger"] == "schedule"


def test_daily_second_entry_rescales_in_place(servers, cluster):
    srv = servers()
    tz = zone_near_noon()
    sched = [
        {"time": hms(local_in(tz, 4)), "min_replicas": 1, "max_replicas": 1},
        {"time": hms(local_in(tz, 16)), "min_replicas": 3, "max_replicas": 3},
    ]
    t = srv.api.post("/tasks", json=task_body("it-daily", "daily", tz, sched)).json()
    srv.api.post(f"/tasks/{t['id']}/activate").raise_for_status()
    t = wait_task(srv, t["id"], running_with(1), what="first entry deployed")
    first = t["endpoint"]["replicas"]["ids"][0]
    t = wait_task(srv, t["id"], lambda t: t["last_run"]["entry"] == 1 and running_with(3)(t), what="rescaled to 3")
    assert first in t["endpoint"]["replicas"]["ids"], "the running replica was restarted"
    assert t["status"] == "active" and t["next_fire_at"] is not None
    scaled = [e for e in srv.api.get("/endpoints/it-daily/events").json() if e["kind"] == "scaled"]
    assert [e["message"] for e in scaled] == ["scaled 1 -> 3 in place"]
    assert route_json(srv.api.get("/endpoints/it-daily").json()["url"] + "/")["replica"] in t["endpoint"]["replicas"]["ids"]


def test_deploy_failure_shows_reason(servers):
    srv = servers()
    t = start_one_off(srv, "it-broken", args={"fail": "weights not found at /nope"})
    t = wait_task(srv, t["id"], lambda t: t["endpoint"]["status"] == "FAILED", timeout=120, what="deploy failure")
    assert "weights not found at /nope" in t["endpoint"]["message"] and t["endpoint"]["error_code"] == "DEPLOYMENT_FAILED"
    assert t["status"] == "completed"  # the schedule did its part; the endpoint says what failed
    assert srv.health()["ray"]["reachable"]


def test_delete_tears_down_application(servers, cluster):
    srv = servers()
    t = start_one_off(srv, "it-gone")
    t = wait_task(srv, t["id"], running_with(1), what="deployed")
    app = f"ep-{t['endpoint']['id']}"
    assert app in cluster.applications()
    url = srv.api.get("/endpoints/it-gone").json()["url"]
    assert srv.api.delete(f"/tasks/{t['id']}").status_code == 204
    wait_until(lambda: app not in cluster.applications(), 60, what="application removed from Ray Serve")
    wait_until(lambda: httpx.get(f"{url}/", timeout=5).status_code == 404, 30, what="route gone")
    assert [e["kind"] for e in srv.api.get("/events", params={"task_name": "it-gone"}).json()][-1] == "deleted"

    def terminated():
        events = srv.api.get("/events", params={"endpoint_name": "it-gone"}).json()
        return [e["data"]["to"] for e in events if e["kind"] == "status"][-1] == "TERMINATED"

    wait_until(terminated, 30, what="its endpoint TERMINATED")
    assert srv.api.get("/endpoints/it-gone").status_code == 404
