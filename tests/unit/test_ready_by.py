"""ready_by over real SQLite and the in-memory Ray: cold starts measured from an endpoint's
own status changes, fires early by the lead, and whether each window was ready."""

import html
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from rota.services.fires import process_due
from rota.store.tables import ColdStartRow, RunRow
from support.console import csrf_of, sign_in

GRACE = timedelta(hours=1)
UTC = timezone.utc

BODY = {
    "name": "office",
    "file_path": "echo",
    "deployment_name": "app",
    "type": "daily",
    "timezone": "UTC",
    "ready_by": True,
    "schedule": [
        {"time": "09:00", "min_replicas": 1, "max_replicas": 1},
        {"time": "12:00", "min_replicas": 0, "max_replicas": 1},
    ],
}


def fire(rt, task_id, now):
    return process_due(rt.db, task_id, now, "schedule", GRACE, rt.scheduler.ready)


def events(client, task):
    return [e for e in client.get("/api/v1/events", params={"task_name": task}).json() if e["kind"] in ("fired", "ready")]


def start_cold(rt, ray, clock, app, seconds):
    """A start Ray takes ``seconds`` over: building (INITIALIZING), then serving."""
    ray.building.add(app)
    rt.reconciler.tick()
    clock.advance(seconds=seconds)
    ray.building.discard(app)
    rt.reconciler.tick()


def late_at_nine(client, rt, ray, clock, body):
    """The task activated, its 09:00 window fired early, its replica still starting at 09:00."""
    t = client.post("/api/v1/tasks", json=body).json()
    client.post("/api/v1/tasks/office/activate")
    clock.now = datetime(2026, 11, 23, 8, 54, 30, tzinfo=UTC)
    fire(rt, t["id"], clock.now)
    ray.building.add(f"ep-{t['endpoint']['id']}")
    rt.reconciler.tick()
    clock.now = datetime(2026, 11, 23, 9, tzinfo=UTC)
    rt.reconciler.tick()
    return t


def test_a_ready_by_task_starts_early_measures_its_starts_and_says_whether_it_was_ready(client, rt, ray, clock, settings):
    r = client.post("/api/v1/tasks", json=BODY)
    assert r.status_code == 201, r.text
    t = client.post("/api/v1/tasks/office/activate").json()
    # No start measured, no template: the default (300 s) + margin (30 s) = 5 m 30 s early.
    first = t["next_fires"][0]
    assert t["next_fire_at"].startswith("2026-11-23T08:54:30") and first["ready_by"].startswith("2026-11-23T09:00:00")
    assert first["note"] == (
        "starts 08:54:30 so that 1 replica is ready by 09:00 UTC; the default estimate 5 m 30 s (no start measured yet)"
    )
    assert t["next_fires"][1]["ready_by"] is None  # 12:00 scales down: at its written time
    assert t["cold_start"]["source"] == "default" and t["cold_start"]["lead_s"] == 330.0

    clock.now = datetime(2026, 11, 23, 8, 54, 30, tzinfo=UTC)
    res = fire(rt, t["id"], clock.now)
    assert res.applied.written == datetime(2026, 11, 23, 9, tzinfo=UTC)
    app = f"ep-{t['endpoint']['id']}"
    start_cold(rt, ray, clock, app, 20)  # INITIALIZING at 08:54:30, RUNNING at 08:54:50
    ep = client.get("/api/v1/endpoints/office").json()
    assert ep["status"] == "RUNNING"
    cs = ep["cold_start"]
    assert (cs["count"], cs["p50_s"], cs["p95_s"], cs["source"], cs["lead_s"]) == (1, 20.0, 20.0, "measured", 50.0)
    assert cs["kind"] == "deploy"  # no wake measured yet: its first deploy
    assert cs["phases"] == {"REQUESTING_RESOURCES": {"p50_s": 20.0, "p95_s": 20.0}}
    run = client.get("/api/v1/tasks/office/runs").json()[0]
    assert (run["scheduled_at"][:19], run["ready_state"], run["lead_s"]) == ("2026-11-23T09:00:00", "pending", 330.0)
    assert run["ready_at"].startswith("2026-11-23T08:54:50")  # its replica served from here

    clock.now = datetime(2026, 11, 23, 9, 0, 1, tzinfo=UTC)
    rt.reconciler.tick()
    fired, ready = events(client, "office")
    assert "330s early so that they serve by the written time" in fired["message"]
    assert ready["message"] == "ready on time: 1 replica serving at 09:00:00 UTC, 5 m 10 s before (fired 5 m 30 s early)"
    assert ready["data"]["on_time"] is True

    # The scale-down at 12:00 fires at 12:00; the next 09:00 now starts by the measured lead.
    clock.now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert fire(rt, t["id"], clock.now).next_fire_at == datetime(2026, 11, 24, 8, 59, 10, tzinfo=UTC)
    got = client.get("/api/v1/tasks/office").json()
    assert got["next_fires"][0]["note"] == (
        "starts 08:59:10 so that 1 replica is ready by 09:00 UTC; p95 cold start 20 s over 1 start + 30 s margin"
    )
    ray.autoscale(app, 0)
    rt.reconciler.tick()

    # Next morning the start takes 80 s: not ready at 09:00, ready 30 s late.
    clock.now = datetime(2026, 11, 24, 8, 59, 10, tzinfo=UTC)
    fire(rt, t["id"], clock.now)
    ray.building.add(app)
    rt.reconciler.tick()
    clock.now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    rt.reconciler.tick()
    clock.now = datetime(2026, 11, 24, 9, 0, 30, tzinfo=UTC)
    ray.building.discard(app)
    rt.reconciler.tick()
    late, ready_late = events(client, "office")[-2:]
    assert late["message"] == "not ready at 09:00:00 UTC: 0 of 1 replica serving (fired 50 s early)"
    assert ready_late["message"] == "ready 30 s late: 1 replica serving since 09:00:30"
    t = client.get("/api/v1/tasks/office").json()
    assert t["readiness"] == {"windows": 2, "on_time": 1, "rate": 0.5}
    # The lead now comes from the wakes (from asleep, as a schedule's scale-up is) only.
    cs = t["cold_start"]
    assert (cs["count"], cs["p95_s"], cs["kind"]) == (1, 80.0, "wake")

    # The console's task page says the same.
    assert sign_in(client, settings.admin_key_path.read_text()).status_code == 303
    page = html.unescape(client.get(f"/console/tasks/{t['id']}").text)
    assert "Ready on time in 1 of the last 2 ready_by windows; p95 cold start 80.0 s over 1 start." in page, page
    assert "so that 1 replica is ready by 09:00 UTC; p95 cold start 1 m 20 s over 1 start + 30 s margin" in page
    assert "ready late" in page and "on time, 330 s early" in page

    # The lead grew (80 s + 30 s): the fire written at 09:00 is not applied again.
    with rt.db.session() as s:
        before = s.scalar(select(func.count()).select_from(RunRow))
    assert fire(rt, t["id"], clock.now).applied is None
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(RunRow)) == before

    metrics = client.get("/metrics").text
    assert 'rota_task_ready_on_time_ratio{project="default",task="office"} 0.5' in metrics
    assert 'rota_task_ready_windows{project="default",task="office"} 2.0' in metrics


def test_a_window_the_schedule_moves_past_is_never_ready(client, rt, ray, clock):
    body = {
        **BODY,
        "schedule": [
            {"time": "09:00", "min_replicas": 1, "max_replicas": 1},
            {"time": "09:01", "min_replicas": 0, "max_replicas": 1},
        ],
    }
    t = late_at_nine(client, rt, ray, clock, body)
    clock.now = datetime(2026, 11, 23, 9, 1, tzinfo=UTC)
    fire(rt, t["id"], clock.now)
    rt.reconciler.tick()
    assert [e["data"]["state"] for e in events(client, "office") if e["kind"] == "ready"] == ["late", "never"]
    assert client.get("/api/v1/tasks/office").json()["readiness"] == {"windows": 1, "on_time": 0, "rate": 0.0}


def test_only_the_last_cold_starts_are_kept_and_a_new_endpoint_borrows_similar_ones(client, rt, ray, clock):
    from rota.services import coldstarts

    ep = client.post("/api/v1/endpoints", json={"name": "a", "template": "echo-chat"}).json()
    app = f"ep-{ep['id']}"
    for _ in range(coldstarts.KEEP + 3):
        ray.autoscale(app, 0) if app in ray.apps else None
        client.post("/api/v1/endpoints/a/stop")
        rt.reconciler.tick()
        client.post("/api/v1/endpoints/a/start")
        start_cold(rt, ray, clock, app, 5)
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(ColdStartRow)) == coldstarts.KEEP
    assert client.get("/api/v1/endpoints/a").json()["cold_start"]["count"] == rt.endpoints.ready.window
    b = client.post("/api/v1/endpoints", json={"name": "b", "template": "echo-chat"}).json()
    got = client.get(f"/api/v1/endpoints/{b['id']}").json()["cold_start"]
    assert (got["source"], got["p95_s"]) == ("similar", 5.0)


def test_ready_by_must_be_a_boolean_and_a_bad_one_changes_nothing(client):
    bad = {**BODY, "schedule": [{"time": "09:00", "min_replicas": 1, "max_replicas": 1, "ready_by": "soon"}]}
    r = client.post("/api/v1/tasks", json=bad)
    assert r.status_code == 422 and r.json()["error"]["field"] == "schedule.0.ready_by"
    r = client.post("/api/v1/tasks", json={**BODY, "ready_by": "yes"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "ready_by"
    assert client.get("/api/v1/tasks").json()["total"] == 0
    client.post("/api/v1/tasks", json={**BODY, "ready_by": False})
    r = client.patch("/api/v1/tasks/office", json={"ready_by": 3})
    assert r.status_code == 422 and r.json()["error"]["field"] == "ready_by"
    assert client.get("/api/v1/tasks/office").json()["ready_by"] is False
    assert client.patch("/api/v1/tasks/office", json={"ready_by": True}).json()["ready_by"] is True


def test_another_projects_key_sees_no_cold_starts_or_readiness(client, rt, settings):
    client.post("/api/v1/tasks", json=BODY)
    client.post("/api/v1/projects", json={"name": "other"})
    key = client.post("/api/v1/keys", json={"name": "k", "project": "other"}).json()["key"]
    h = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/v1/tasks/office", headers=h).status_code == 404
    assert client.get("/api/v1/endpoints/office", headers=h).status_code == 404
    assert client.get("/api/v1/tasks/office", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/v1/tasks", headers=h).json()["total"] == 0


def test_the_console_edits_ready_by_per_row_and_keeps_what_it_shows(client, settings):
    body = {**BODY, "ready_by": True, "schedule": [*BODY["schedule"][:1], {**BODY["schedule"][1], "ready_by": False}]}
    t = client.post("/api/v1/tasks", json=body).json()
    assert sign_in(client, settings.admin_key_path.read_text()).status_code == 303
    page = client.get(f"/console/tasks/{t['id']}/edit").text
    assert 'name="schedule.0.ready_by" value="on" checked' in page and 'name="schedule.1.ready_by" value="on">' in page
    form = {
        "csrf_token": csrf_of(page),
        "type": "daily",
        "timezone": "UTC",
        "schedule.0.time": "09:00",
        "schedule.0.min_replicas": "1",
        "schedule.0.max_replicas": "1",
        "schedule.1.time": "12:00",
        "schedule.1.min_replicas": "0",
        "schedule.1.max_replicas": "1",
        "schedule.2.time": "10:00",
        "schedule.2.min_replicas": "2",
        "schedule.2.max_replicas": "2",
        "schedule.2.ready_by": "on",
    }
    form["schedule.0.ready_by"] = "on"
    r = client.post(f"/console/tasks/{t['id']}/edit", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    got = client.get("/api/v1/tasks/office").json()
    # What the boxes showed is what the task does: 09:00 and 10:00 ready by, 12:00 not.
    assert [e["ready_by"] for e in got["schedule"]] == [True, None, True] and got["ready_by"] is False


def test_a_lead_that_grew_moves_the_next_fire_earlier_at_the_next_sweep(client, rt, clock):
    t = client.post("/api/v1/tasks", json=BODY).json()
    assert client.post("/api/v1/tasks/office/activate").json()["next_fire_at"].startswith("2026-11-23T08:54:30")
    with rt.db.session() as s:  # a 20-minute wake was measured meanwhile (e.g. on a busy cluster)
        s.add(
            ColdStartRow(
                project_id=1,
                endpoint_id=t["endpoint"]["id"],
                began_at=datetime(2026, 11, 22, 9, tzinfo=UTC),
                ready_at=datetime(2026, 11, 22, 9, 20, tzinfo=UTC),
                phases={},
                kind="wake",
            )
        )
    clock.now = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
    rt.scheduler.catch_up(trigger="catch_up", older_than=timedelta(seconds=5))
    got = client.get("/api/v1/tasks/office").json()
    # 20 min + 30 s margin before 09:00; nothing applied yet, and 09:00 is still the next window.
    assert got["next_fire_at"].startswith("2026-11-23T08:39:30") and got["last_run"] is None
    assert got["next_fires"][0]["ready_by"].startswith("2026-11-23T09:00:00")


def test_an_edit_inside_the_lead_applies_to_the_window_already_started(client, rt, clock):
    t = client.post("/api/v1/tasks", json=BODY).json()
    client.post("/api/v1/tasks/office/activate")
    clock.now = datetime(2026, 11, 23, 8, 54, 30, tzinfo=UTC)
    fire(rt, t["id"], clock.now)  # 09:00's replica is starting, 1..1
    clock.now = datetime(2026, 11, 23, 8, 57, tzinfo=UTC)
    schedule = [{**BODY["schedule"][0], "min_replicas": 2, "max_replicas": 2}, BODY["schedule"][1]]
    assert client.patch("/api/v1/tasks/office", json={"schedule": schedule}).status_code == 200
    res = fire(rt, t["id"], clock.now)
    assert res.applied is not None and res.applied.entry.min_replicas == 2
    runs = client.get("/api/v1/tasks/office/runs").json()
    assert [(r["scheduled_at"][:19], r["min_replicas"]) for r in runs] == [("2026-11-23T09:00:00", 2)]
    assert client.get("/api/v1/endpoints/office").json()["replicas"]["min"] == 2


def test_a_one_off_activated_inside_its_lead_starts_at_once_and_every_page_shows_it(client, rt, clock, settings):
    body = {**BODY, "type": "one_off", "schedule": [{"time": "2026-11-23T08:03", "min_replicas": 1, "max_replicas": 1}]}
    t = client.post("/api/v1/tasks", json=body).json()
    client.post("/api/v1/tasks/office/activate")  # 08:00: it should have started at 07:57:30
    res = process_due(rt.db, t["id"], clock.now, "schedule", timedelta(seconds=60), rt.scheduler.ready)
    assert res.applied is not None and not res.missed
    assert client.get("/api/v1/tasks/office/projection", params={"days": 2}).status_code == 200
    assert sign_in(client, settings.admin_key_path.read_text()).status_code == 303
    assert client.get(f"/console/tasks/{t['id']}").status_code == 200


def test_a_late_window_of_a_deactivated_task_is_never_ready(client, rt, ray, clock):
    late_at_nine(client, rt, ray, clock, BODY)
    client.post("/api/v1/tasks/office/deactivate")
    rt.reconciler.tick()
    assert [e["data"]["state"] for e in events(client, "office") if e["kind"] == "ready"] == ["late", "never"]


def test_similar_starts_come_from_the_same_project_only(client, rt, ray, clock):
    client.post("/api/v1/endpoints", json={"name": "a", "template": "echo-chat"})
    start_cold(rt, ray, clock, f"ep-{client.get('/api/v1/endpoints/a').json()['id']}", 5)
    assert client.get("/api/v1/endpoints/a").json()["cold_start"]["source"] == "measured"
    client.post("/api/v1/projects", json={"name": "other"})
    key = client.post("/api/v1/keys", json={"name": "k", "project": "other"}).json()["key"]
    h = {"Authorization": f"Bearer {key}"}
    assert client.post("/api/v1/endpoints", json={"name": "b", "template": "echo-chat"}, headers=h).status_code == 201
    theirs = client.get("/api/v1/endpoints/b", headers=h).json()["cold_start"]
    assert (theirs["source"], theirs["count"]) == ("default", 0)  # not project default's 5 s start
    mine = client.post("/api/v1/endpoints", json={"name": "c", "template": "echo-chat"}).json()
    assert client.get(f"/api/v1/endpoints/{mine['id']}").json()["cold_start"]["source"] == "similar"
