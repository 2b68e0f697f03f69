"""Fires and the reconciler over real SQLite and an in-memory Ray Serve, with an injected clock."""

import threading
from datetime import timedelta

from sqlalchemy import func, select

from rota.domain.models import TaskCreate, TaskUpdate
from rota.services.fires import process_due
from rota.store.tables import RunRow

GRACE = timedelta(hours=1)


def make(svc, name="t1", type_="daily", schedule=None, **kw):
    schedule = schedule or [{"time": "09:00", "min_replicas": 1, "max_replicas": 1}, {"time": "12:00", "min_replicas": 3, "max_replicas": 3}]
    body = {"name": name, "file_path": "echo", "deployment_name": "app", "type": type_, "timezone": "UTC", "schedule": schedule, **kw}
    return svc.create(TaskCreate.model_validate(body))


def kinds(svc, ref):
    return [e.kind for e in svc.events(ref)]


def runs(db, task_id):
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(RunRow).where(RunRow.task_id == task_id))


def test_created_idle_then_activated_with_next_fire(svc, clock):
    t = make(svc)
    assert t.status.value == "idle" and t.next_fire_at is None and t.app.status.value == "NOT_DEPLOYED"
    t = svc.activate(t.id)
    assert t.status.value == "active"
    assert t.next_fire_at == clock.now.replace(hour=9)
    assert t.next_fire_local.startswith("2026-11-23T09:00:00")
    assert [f.entry for f in t.next_fires] == [0, 1, 0]
    assert kinds(svc, t.id) == ["created", "activated"]


def test_daily_fire_deploys_then_rescales_in_place(svc, db, ray, reconciler, clock):
    t = svc.activate(make(svc).id)
    clock.now = t.next_fire_at
    r = process_due(db, t.id, clock.now, "schedule", GRACE)
    assert r.applied.entry.index == 0 and r.next_fire_at == clock.now.replace(hour=12)
    reconciler.tick()
    first = ray.apps["t1"]["replicas"]
    assert len(first) == 1
    got = svc.get(t.id)
    assert got.app.status.value == "RUNNING" and got.app.replica_ids == first and got.last_run.entry == 0
    make(svc, name="t2")  # never fired: no run, nothing for the reconciler to look at
    listed = {x.name: x for x in svc.list()[0]}  # a page's last runs come from one query
    assert listed["t1"].last_run == got.last_run and listed["t2"].last_run is None

    clock.now = r.next_fire_at
    process_due(db, t.id, clock.now, "schedule", GRACE)
    reconciler.tick()
    after = ray.apps["t1"]["replicas"]
    assert len(after) == 3 and after[0] == first[0]  # the running replica was kept
    ev = svc.events(t.id)
    assert [e.kind for e in ev] == ["created", "activated", "fired", "deploying", "running", "fired", "scaled"]
    assert ev[-1].message == "scaled 1 -> 3 in place"


def test_one_off_fires_once_and_completes(svc, db, ray, reconciler, clock):
    t = make(svc, "once", "one_off", [{"time": "2026-11-23T08:30", "min_replicas": 2, "max_replicas": 4}])
    svc.activate(t.id)
    clock.advance(minutes=30)
    assert process_due(db, t.id, clock.now, "schedule", GRACE).applied is not None
    assert process_due(db, t.id, clock.now, "schedule", GRACE).applied is None
    reconciler.tick()
    got = svc.get(t.id)
    assert got.status.value == "completed" and got.next_fire_at is None
    assert ray.apps["once"]["config"]["deployments"][0]["autoscaling_config"] == {"min_replicas": 2, "max_replicas": 4}
    assert runs(db, t.id) == 1


def test_racing_fires_apply_exactly_once(svc, db, clock):
    t = svc.activate(make(svc).id)
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
    assert runs(db, t.id) == 1
    assert kinds(svc, t.id).count("fired") == 1


def test_catch_up_applies_latest_due_daily_entry_once(svc, db, clock):
    t = svc.activate(make(svc).id)
    clock.now = clock.now.replace(hour=13)  # both 09:00 and 12:00 fell due while down
    r = process_due(db, t.id, clock.now, "catch_up", GRACE)
    assert r.applied.entry.index == 1
    assert process_due(db, t.id, clock.now, "catch_up", GRACE).applied is None
    ev = svc.events(t.id)[-1]
    assert ev.kind == "caught_up" and ev.data["skipped"] == 1 and ev.data["max_replicas"] == 3
    assert runs(db, t.id) == 1
    assert svc.get(t.id).app.desired_max_replicas == 3


def test_one_off_missed_past_grace(svc, db, clock):
    t = make(svc, "late", "one_off", [{"time": "2026-11-23T08:30", "min_replicas": 1, "max_replicas": 1}])
    svc.activate(t.id)
    clock.advance(hours=2)
    assert process_due(db, t.id, clock.now, "catch_up", GRACE).applied is None
    got = svc.get(t.id)
    assert got.status.value == "failed" and "missed" in got.status_reason and got.app.desired_min_replicas is None
    assert kinds(svc, t.id)[-1] == "missed" and runs(db, t.id) == 0


def test_one_off_within_grace_fires_on_catch_up(svc, db, clock):
    t = make(svc, "soon", "one_off", [{"time": "2026-11-23T08:30", "min_replicas": 1, "max_replicas": 1}])
    svc.activate(t.id)
    clock.advance(minutes=80)  # 50 min late, grace 1 h
    assert process_due(db, t.id, clock.now, "catch_up", GRACE).applied is not None
    assert svc.get(t.id).status.value == "completed"


def test_patching_active_schedule_does_not_backfill(svc, db, clock):
    t = svc.activate(make(svc).id)
    clock.now = clock.now.replace(hour=10)
    svc.update(t.id, TaskUpdate.model_validate({"schedule": [{"time": "09:30", "min_replicas": 2, "max_replicas": 2}, {"time": "11:00", "min_replicas": 1, "max_replicas": 1}]}))
    got = svc.get(t.id)
    assert got.next_fire_at == clock.now.replace(hour=11)
    assert process_due(db, t.id, clock.now, "catch_up", GRACE).applied is None  # 09:30 is before the edit


def test_ray_outage_is_visible_and_heals(svc, db, ray, reconciler, clock):
    t = svc.activate(make(svc).id)
    clock.now = t.next_fire_at
    process_due(db, t.id, clock.now, "schedule", GRACE)
    reconciler.tick()
    ray.reachable, ray.apps = False, {}
    reconciler.tick()
    got = svc.get(t.id)
    assert got.app.status.value == "UNREACHABLE" and "refused" in got.app.message
    ray.reachable = True  # Ray is back, empty (restarted): the reconciler redeploys
    reconciler.tick()
    assert svc.get(t.id).app.status.value == "RUNNING" and "t1" in ray.apps
    assert kinds(svc, t.id)[-3:] == ["unreachable", "deploying", "recovered"]
    assert "no longer had it" in svc.events(t.id)[-2].message


def test_deploy_failure_fails_the_task_with_reason_then_recovers(svc, db, ray, reconciler, clock):
    t = svc.activate(make(svc).id)
    clock.now = t.next_fire_at
    process_due(db, t.id, clock.now, "schedule", GRACE)
    ray.failing["t1"] = "RuntimeError: model not found"
    reconciler.tick()
    got = svc.get(t.id)
    assert got.status.value == "failed" and "model not found" in got.status_reason
    puts = ray.puts
    reconciler.tick()
    assert ray.puts == puts  # the same failing config is not resent forever
    del ray.failing["t1"]
    reconciler.tick()
    assert svc.get(t.id).status.value == "active"
    assert kinds(svc, t.id)[-2:] == ["failed", "recovered"]


def test_delete_tears_down_and_keeps_events(svc, db, ray, reconciler, clock):
    t = svc.activate(make(svc).id)
    clock.now = t.next_fire_at
    process_due(db, t.id, clock.now, "schedule", GRACE)
    reconciler.tick()
    svc.delete(t.id)
    reconciler.tick()
    assert ray.apps == {}
    assert [e.kind for e in svc.all_events("t1")][-1] == "deleted"


def test_running_only_once_the_route_is_served(svc, db, ray, reconciler, clock):
    t = svc.activate(make(svc).id)
    clock.now = t.next_fire_at
    process_due(db, t.id, clock.now, "schedule", GRACE)
    ray.unrouted.add("t1")
    reconciler.tick()
    assert svc.get(t.id).app.status.value == "DEPLOYING"
    ray.unrouted.clear()
    reconciler.tick()
    assert svc.get(t.id).app.status.value == "RUNNING"


def test_deactivate_stops_fires(svc, db, clock):
    t = svc.activate(make(svc).id)
    svc.deactivate(t.id)
    clock.now = clock.now.replace(hour=13)
    assert process_due(db, t.id, clock.now, "catch_up", GRACE).applied is None
    assert svc.get(t.id).next_fire_at is None
