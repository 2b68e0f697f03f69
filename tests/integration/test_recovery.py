"""Nothing is lost: SIGKILL of the control plane between fires, and a Ray outage."""

import time
from datetime import datetime, timezone

from cryptography.fernet import Fernet

from support.endpoints import TEST_TEMPLATES, wait_endpoint
from support.procs import wait_until
from support.tasks import hms, kinds, local_in, route_json, running_with, start_one_off, task_body, wait_task, zone_near_noon


def fires(srv, ref):
    return [e for e in srv.api.get(f"/tasks/{ref}/events").json() if e["kind"] in ("fired", "caught_up")]


def test_sigkill_between_fires_applies_missed_entries_exactly_once(servers, tmp_path):
    home = tmp_path / "rota"
    srv = servers(home, ROTA_ONE_OFF_GRACE_S="8")
    tz = zone_near_noon()
    first = {"time": hms(local_in(tz, 3)), "min_replicas": 1, "max_replicas": 1}
    daily = srv.api.post("/tasks", json=task_body("it-crash", "daily", tz, [first])).json()
    srv.api.post(f"/tasks/{daily['id']}/activate").raise_for_status()
    t = wait_task(srv, daily["id"], running_with(1), what="first entry deployed")
    replica = t["endpoint"]["replicas"]["ids"][0]

    # Schedule, relative to the moment of the crash: a daily entry and two one-offs that
    # all fall due while the control plane is dead.
    one = lambda s: local_in(tz, s).strftime("%Y-%m-%dT%H:%M:%S")
    srv.api.patch(
        f"/tasks/{daily['id']}", json={"schedule": [first, {"time": hms(local_in(tz, 8)), "min_replicas": 2, "max_replicas": 2}]}
    ).raise_for_status()
    late = srv.api.post(
        "/tasks", json=task_body("it-late", "one_off", tz, [{"time": one(3), "min_replicas": 1, "max_replicas": 1}])
    ).json()
    soon = srv.api.post(
        "/tasks", json=task_body("it-soon", "one_off", tz, [{"time": one(12), "min_replicas": 1, "max_replicas": 1}])
    ).json()
    for x in (late, soon):
        srv.api.post(f"/tasks/{x['id']}/activate").raise_for_status()
    srv.kill()
    killed_at = time.monotonic()
    time.sleep(max(0.0, 15 - (time.monotonic() - killed_at)))

    srv.start()  # same home, same database
    t = wait_task(srv, daily["id"], lambda t: t["last_run"]["entry"] == 1 and running_with(2)(t), what="catch-up rescale")
    assert t["last_run"]["trigger"] == "catch_up"
    assert replica in t["endpoint"]["replicas"]["ids"], "catch-up restarted the running replica"
    wait_task(srv, late["id"], lambda t: t["status"] == "missed", what="late one-off missed")
    assert "missed" in kinds(srv, late["id"]) and "fired" not in kinds(srv, late["id"])
    wait_task(srv, soon["id"], lambda t: t["status"] == "completed" and running_with(1)(t), what="one-off within grace fired")
    assert srv.health()["scheduler"]["last_catch_up_s"] < 5

    # Crash and restart again: nothing is applied a second time.
    before = {x: fires(srv, x) for x in ("it-crash", "it-soon")}
    srv.kill()
    srv.start()
    time.sleep(3)
    after = {x: fires(srv, x) for x in ("it-crash", "it-soon")}
    assert after == before
    scheduled = [e["data"]["scheduled_at"] for e in after["it-crash"]]
    assert len(scheduled) == len(set(scheduled)) == 2
    assert len(after["it-soon"]) == 1


def test_ray_outage_is_visible_and_converges(servers, cluster):
    srv = servers()
    t = start_one_off(srv, "it-outage")
    wait_task(srv, t["id"], running_with(1), what="deployed")

    cluster.stop()
    try:
        t = wait_task(srv, t["id"], lambda t: t["endpoint"]["message"] == "Ray unreachable", what="outage visible")
        assert t["endpoint"]["status"] == "RUNNING"  # nothing is known to have changed
        t0 = time.monotonic()
        for _ in range(10):  # the API keeps answering
            assert srv.api.get("/tasks").status_code == 200
            assert srv.health()["ray"]["reachable"] is False
        assert time.monotonic() - t0 < 5
    finally:
        cluster.start()
    restarted = datetime.now(timezone.utc)
    wait_task(srv, t["id"], running_with(1), timeout=120, what="converged after Ray returned")
    assert route_json(srv.api.get("/endpoints/it-outage").json()["url"] + "/")["greeting"] == "hello"
    events = srv.api.get("/endpoints/it-outage/events").json()
    assert [e for e in events if e["kind"] == "deploying" and e["data"].get("redeploy")], events  # Ray had lost it
    print(f"converged {(datetime.now(timezone.utc) - restarted).total_seconds():.1f}s after Ray was back")


def test_a_restart_on_a_fresh_home_directory_restarts_no_replica(servers, cluster, tmp_path):
    """A control plane in a container: what must survive a restart is in the store and in
    ROTA_SECRET_KEY (a Secret); its home directory starts empty. No replica restarts,
    the gateway's included, and nothing is redeployed."""
    (tmp_path / "store").mkdir()
    env = {
        "ROTA_SECRET_KEY": Fernet.generate_key().decode(),
        "ROTA_DATABASE_URL": f"sqlite:///{tmp_path / 'store' / 'rota.db'}",
        "ROTA_TEMPLATES_PATH": str(TEST_TEMPLATES),
    }
    first = servers(tmp_path / "home-1", **env)
    r = first.api.post("/endpoints", json={"name": "kept", "template": "echo-chat", "scaling": {"replicas": 1}})
    assert r.status_code == 201, r.text
    before = wait_endpoint(first, "kept", lambda e: e["status"] == "RUNNING" and e["converged"], what="RUNNING")

    def replica_ids() -> dict[str, list[str]] | None:
        """Each application's replicas, once all of them run (an earlier test's gateway
        may still be rolling to this server's: one starting, one stopping)."""
        apps = cluster.applications()
        listed = {
            name: [r for d in apps[name]["deployments"].values() for r in d["replicas"]]
            for name in (f"ep-{before['id']}", "rota-gateway")
        }
        if any(r["state"] != "RUNNING" for rs in listed.values() for r in rs):
            return None
        return {name: sorted(r["replica_id"] for r in rs) for name, rs in listed.items()}

    ids = wait_until(replica_ids, 60, what="every replica running")
    assert all(ids.values()), ids
    last_event = first.api.get("/events").json()[-1]["id"]
    first.stop()

    fresh = tmp_path / "home-2"
    fresh.mkdir()
    (fresh / "admin_key").write_text(first.admin_key)  # the operator's key (a Secret), not server state
    second = servers(fresh, **env, ROTA_PORT=str(first.port))  # the same Service address
    ticks = second.health()["reconciler"]["ticks"]
    wait_until(lambda: second.health()["reconciler"]["ticks"] >= ticks + 5, 60, what="five reconciler ticks")
    after = second.api.get("/endpoints/kept").json()
    assert (after["status"], after["converged"], after["replicas"]["ids"]) == ("RUNNING", True, before["replicas"]["ids"])
    assert wait_until(replica_ids, 60, what="every replica running") == ids
    since = [e["kind"] for e in second.api.get("/events", params={"after_id": last_event}).json()]
    assert "deploying" not in since and "status" not in since, since
    assert not (fresh / "internal_token").exists() and not (fresh / "secret_key").exists()
