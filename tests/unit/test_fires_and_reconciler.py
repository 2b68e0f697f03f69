"""Fires and the reconciler over real SQLite and an in-memory Ray Serve, with an injected clock."""

import threading
from datetime import timedelta

from sqlalchemy import func, select

from rota.domain.tasks import TaskCreate, TaskUpdate
from rota.services.fires import process_due
from rota.store.tables import EndpointRow, RunRow

GRACE = timedelta(hours=1)


def make(rt, who, name="t1", type_="daily", schedule=None, **kw):
    schedule = schedule or [
        {"time": "09:00", "min_replicas": 1, "max_replicas": 1},
        {"time": "12:00", "min_replicas": 3, "max_replicas": 3},
    ]
    body = {
        "name": name,
        "file_path": "echo",
        "deployment_name": "app",
        "type": type_,
        "timezone": "UTC",
        "schedule": schedule,
        **kw,
    }
    return rt.tasks.create(who, TaskCreate.model_validate(body))


def kinds(rt, who, **where):
    return [e.kind.value for e in rt.events.list(who, **where)]


def runs(db, task_id):
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(RunRow).where(RunRow.task_id == task_id))


def test_created_idle_with_its_own_pending_endpoint_then_activated(rt, admin, clock):
    t = make(rt, admin)
    assert t.status.value == "idle" and t.next_fire_at is None and t.owns_endpoint
    assert (t.endpoint.name, t.endpoint.status.value, t.endpoint.replicas.source) == ("t1", "PENDING", "none")
    assert (t.file_path, t.deployment_name) == ("echo", "app")
    t = rt.tasks.activate(admin, t.id)
    assert t.status.value == "active" and t.next_fire_at == clock.now.replace(hour=9)
    assert t.next_fire_local.startswith("2026-11-23T09:00:00") and [f.entry for f in t.next_fires] == [0, 1, 0]
    assert kinds(rt, admin, task_id=t.id) == ["created", "activated"]
    ep = rt.endpoints.get(admin, "t1")
    assert ep.kind.value == "application" and ep.owner_task == "t1" and ep.url.endswith(f"/ep/{ep.id}") and ep.scaling is None


def test_daily_fire_deploys_its_application_then_rescales_in_place(rt, admin, ray, reconciler, clock, db):
    t = rt.tasks.activate(admin, make(rt, admin).id)
    clock.now = t.next_fire_at
    r = process_due(db, t.id, clock.now, "schedule", GRACE)
    assert r.applied.entry.index == 0 and r.next_fire_at == clock.now.replace(hour=12)
    reconciler.tick()
    ep = rt.endpoints.get(admin, "t1")
    app = ray.apps[f"ep-{ep.id}"]
    first = app["replicas"]
    assert len(first) == 1 and app["config"]["route_prefix"] == f"/ep/{ep.id}"
    # A schedule-sized application uses Ray Serve's own autoscaling between its bounds.
    assert app["config"]["deployments"][0]["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 1}
    got = rt.tasks.get(admin, t.id)
    assert got.endpoint.status.value == "RUNNING" and got.endpoint.replicas.ids == first and got.last_run.entry == 0
    make(rt, admin, name="t2")  # never fired: nothing deployed, not even looked at by the reconciler
    listed = {x.name: x for x in rt.tasks.list(admin)[0]}  # a page's runs and endpoints come from one query each
    assert listed["t1"].last_run == got.last_run and listed["t2"].last_run is None

    clock.now = r.next_fire_at
    process_due(db, t.id, clock.now, "schedule", GRACE)
    reconciler.tick()
    after = ray.apps[f"ep-{ep.id}"]["replicas"]
    assert len(after) == 3 and after[0] == first[0]  # the running replica was kept
    assert kinds(rt, admin, task_id=t.id) == ["created", "activated", "fired", "fired"]
    ev = rt.events.list(admin, endpoint_id=ep.id)
    assert [e.kind.value for e in ev] == ["created", "scheduled", "deploying", "status", "scheduled", "scaled"]
    assert ev[-1].message == "scaled 1 -> 3 in place"


def test_a_fire_racing_a_tick_is_recorded_as_what_was_put(rt, admin, ray, reconciler, clock, db):
    # A fire commits between the tick's snapshot and its record: the events and the
    # applied bounds say what Ray Serve was sent, and the next tick sends the new bounds.
    t = rt.tasks.activate(admin, make(rt, admin).id)
    clock.now = t.next_fire_at
    process_due(db, t.id, clock.now, "schedule", GRACE)
    reconciler.tick()
    ep = rt.endpoints.get(admin, "t1")
    clock.now = clock.now.replace(hour=12)
    ray.on_observe = lambda: process_due(db, t.id, clock.now, "schedule", GRACE)  # 3..3 lands mid-tick
    reconciler.tick()
    auto = ray.apps[f"ep-{ep.id}"]["config"]["deployments"][0]["autoscaling_config"]
    assert (auto["min_replicas"], auto["max_replicas"]) == (1, 1)
    with db.session() as s:
        row = s.get(EndpointRow, ep.id)
        assert (row.applied_min, row.applied_max) == (1, 1) and (row.scheduled_min, row.scheduled_max) == (3, 3)
    assert "scaled" not in kinds(rt, admin, endpoint_id=ep.id)
    reconciler.tick()
    assert ray.apps[f"ep-{ep.id}"]["config"]["deployments"][0]["autoscaling_config"]["max_replicas"] == 3
    assert [e.message for e in rt.events.list(admin, endpoint_id=ep.id) if e.kind.value == "scaled"] == ["scaled 1 -> 3 in place"]


def test_one_off_fires_once_and_completes(rt, admin, ray, reconciler, clock, db):
    t = make(rt, admin, "once", "one_off", [{"time": "2026-11-23T08:30", "min_replicas": 2, "max_replicas": 4}])
    rt.tasks.activate(admin, t.id)
    clock.advance(minutes=30)
    assert process_due(db, t.id, clock.now, "schedule", GRACE).applied is not None
    assert process_due(db, t.id, clock.now, "schedule", GRACE).applied is None
    reconciler.tick()
    got = rt.tasks.get(admin, t.id)
    assert got.status.value == "completed" and got.next_fire_at is None
    assert ray.apps[f"ep-{got.endpoint.id}"]["config"]["deployments"][0]["autoscaling_config"] == {
        "min_replicas": 2,
        "max_replicas": 4,
    }
    assert runs(db, t.id) == 1


def test_racing_fires_apply_exactly_once(rt, admin, clock, db):
    t = rt.tasks.activate(admin, make(rt, admin).id)
    clock.now = t.next_fire_at
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(process_due(db, t.id, clock.now, "schedule", GRACE))) for _ in range(8)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(r.applied is not None for r in results) == 1
    assert runs(db, t.id) == 1 and kinds(rt, admin, task_id=t.id).count("fired") == 1


def test_catch_up_applies_latest_due_daily_entry_once(rt, admin, clock, db):
    t = rt.tasks.activate(admin, make(rt, admin).id)
    clock.now = clock.now.replace(hour=13)  # both 09:00 and 12:00 fell due while down
    r = process_due(db, t.id, clock.now, "catch_up", GRACE)
    assert r.applied.entry.index == 1
    assert process_due(db, t.id, clock.now, "catch_up", GRACE).applied is None
    ev = rt.events.list(admin, task_id=t.id)[-1]
    assert ev.kind.value == "caught_up" and ev.data["skipped"] == 1 and ev.data["max_replicas"] == 3
    assert runs(db, t.id) == 1 and rt.tasks.get(admin, t.id).endpoint.replicas.max == 3


def test_one_off_missed_past_grace_is_missed_and_never_fires(rt, admin, clock, db):
    t = make(rt, admin, "late", "one_off", [{"time": "2026-11-23T08:30", "min_replicas": 1, "max_replicas": 1}])
    rt.tasks.activate(admin, t.id)
    clock.advance(hours=2)
    assert process_due(db, t.id, clock.now, "catch_up", GRACE).applied is None
    got = rt.tasks.get(admin, t.id)
    assert got.status.value == "missed" and "missed" in got.status_reason and got.endpoint.replicas.source == "none"
    assert kinds(rt, admin, task_id=t.id)[-1] == "missed" and runs(db, t.id) == 0
    clock.advance(days=1)
    assert process_due(db, t.id, clock.now, "catch_up", GRACE).applied is None and got.next_fire_at is None


def test_one_off_within_grace_fires_on_catch_up(rt, admin, clock, db):
    t = make(rt, admin, "soon", "one_off", [{"time": "2026-11-23T08:30", "min_replicas": 1, "max_replicas": 1}])
    rt.tasks.activate(admin, t.id)
    clock.advance(minutes=80)  # 50 min late, grace 1 h
    assert process_due(db, t.id, clock.now, "catch_up", GRACE).applied is not None
    assert rt.tasks.get(admin, t.id).status.value == "completed"


def test_patching_active_schedule_does_not_backfill(rt, admin, clock, db):
    t = rt.tasks.activate(admin, make(rt, admin).id)
    clock.now = clock.now.replace(hour=10)
    new = [{"time": "09:30", "min_replicas": 2, "max_replicas": 2}, {"time": "11:00", "min_replicas": 1, "max_replicas": 1}]
    rt.tasks.update(admin, t.id, TaskUpdate.model_validate({"schedule": new}))
    assert rt.tasks.get(admin, t.id).next_fire_at == clock.now.replace(hour=11)
    assert process_due(db, t.id, clock.now, "catch_up", GRACE).applied is None  # 09:30 is before the edit


def test_ray_outage_keeps_the_status_and_heals(rt, admin, ray, reconciler, clock, db):
    t = rt.tasks.activate(admin, make(rt, admin).id)
    clock.now = t.next_fire_at
    process_due(db, t.id, clock.now, "schedule", GRACE)
    reconciler.tick()
    ray.reachable, ray.apps = False, {}
    reconciler.tick()
    got = rt.tasks.get(admin, t.id).endpoint
    assert got.status.value == "RUNNING" and got.message == "Ray unreachable"  # nothing known to have changed
    ray.reachable = True  # Ray is back, empty (restarted): the reconciler redeploys
    reconciler.tick()
    assert rt.tasks.get(admin, t.id).endpoint.status.value == "RUNNING" and f"ep-{got.id}" in ray.apps
    ev = rt.events.list(admin, endpoint_id=got.id)
    assert ev[-1].kind.value == "deploying" and "no longer had it" in ev[-1].message


def test_a_failed_application_fails_its_endpoint_not_its_task(rt, admin, ray, reconciler, clock, db):
    t = rt.tasks.activate(admin, make(rt, admin).id)
    clock.now = t.next_fire_at
    process_due(db, t.id, clock.now, "schedule", GRACE)
    ep = rt.endpoints.get(admin, "t1")
    ray.failing[f"ep-{ep.id}"] = "RuntimeError: model not found"
    reconciler.tick()
    got = rt.tasks.get(admin, t.id)
    assert got.status.value == "active" and got.next_fire_at is not None  # the schedule goes on
    assert got.endpoint.status.value == "FAILED" and "model not found" in got.endpoint.message
    puts = ray.puts
    reconciler.tick()
    assert ray.puts == puts  # the same failing config is not resent forever
    del ray.failing[f"ep-{ep.id}"]
    reconciler.tick()
    assert rt.tasks.get(admin, t.id).endpoint.status.value == "RUNNING"


def test_delete_tears_down_its_application_and_keeps_events(rt, admin, ray, reconciler, clock, db):
    t = rt.tasks.activate(admin, make(rt, admin).id)
    clock.now = t.next_fire_at
    process_due(db, t.id, clock.now, "schedule", GRACE)
    reconciler.tick()
    rt.tasks.delete(admin, t.id)
    reconciler.tick()
    assert set(ray.apps) == {"rota-gateway"}
    assert kinds(rt, admin, task_name="t1")[-1] == "deleted"
    statuses = [e.data["to"] for e in rt.events.list(admin, endpoint_name="t1") if e.kind.value == "status"]
    assert statuses[-1] == "TERMINATED"
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(EndpointRow)) == 0


def test_running_only_once_the_route_is_served(rt, admin, ray, reconciler, clock, db):
    t = rt.tasks.activate(admin, make(rt, admin).id)
    clock.now = t.next_fire_at
    process_due(db, t.id, clock.now, "schedule", GRACE)
    ep = rt.endpoints.get(admin, "t1")
    ray.unrouted.add(f"ep-{ep.id}")
    reconciler.tick()
    got = rt.endpoints.get(admin, "t1")
    assert (got.status.value, got.phase.value) == ("INITIALIZING", "WAITING_FOR_ROUTE")
    ray.unrouted.clear()
    reconciler.tick()
    assert rt.endpoints.get(admin, "t1").status.value == "RUNNING"


def test_deactivate_stops_fires(rt, admin, clock, db):
    t = rt.tasks.activate(admin, make(rt, admin).id)
    rt.tasks.deactivate(admin, t.id)
    clock.now = clock.now.replace(hour=13)
    assert process_due(db, t.id, clock.now, "catch_up", GRACE).applied is None
    assert rt.tasks.get(admin, t.id).next_fire_at is None


def test_the_gateway_is_always_deployed_first_and_alone_at_the_root(rt, ray, reconciler):
    reconciler.tick()
    gw = ray.apps["rota-gateway"]["config"]
    assert gw["route_prefix"] == "/" and gw["deployments"][0]["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 1}
    assert gw["args"]["token"] == rt.internal_token
