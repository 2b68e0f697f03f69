"""Usage and cost: replica-seconds as the reconciler sees replicas run, priced by the book
(or the project's own prices), and what a schedule commits to, DST days counted right."""

from datetime import date, datetime, timezone

import pytest

from rota.domain.schedule import ScheduleSpec
from rota.domain.usage import commitments, hours_split


def near(x: float):
    return pytest.approx(x, abs=1e-6)  # the API rounds to 6 decimals


PARIS = [{"time": "08:00", "min_replicas": 2, "max_replicas": 4}, {"time": "20:00", "min_replicas": 0, "max_replicas": 1}]


def test_a_daily_schedule_commits_per_local_day_and_the_clock_changes_count():
    spec = ScheduleSpec.build("daily", "Europe/Paris", PARIS)
    days = commitments(spec, date(2026, 3, 28), 3, before=(9, 9))
    # 29 March 2026: clocks go forward at 02:00, a 23-hour day (the night is an hour short).
    assert [d.hours for d in days] == [24.0, 23.0, 24.0]
    assert [d.floor_replica_hours for d in days] == [24.0, 24.0, 24.0]  # 12 h at 2 replicas, every day
    assert [d.ceiling_replica_hours for d in days] == [60.0, 59.0, 60.0]  # 12 h x 4 + the night x 1
    autumn = commitments(spec, date(2026, 10, 25), 1, before=(9, 9))[0]
    assert (autumn.hours, autumn.ceiling_replica_hours) == (25.0, 61.0)


def test_a_one_off_commits_from_its_fire_on_and_the_endpoints_own_bounds_before():
    spec = ScheduleSpec.build("one_off", "UTC", [{"time": "2026-12-01T12:00", "min_replicas": 1, "max_replicas": 3}])
    before, day_of, after = commitments(spec, date(2026, 11, 30), 3, before=(0, 1))
    assert (before.floor_replica_hours, before.ceiling_replica_hours) == (0.0, 24.0)
    assert (day_of.floor_replica_hours, day_of.ceiling_replica_hours) == (12.0, 12 * 1 + 12 * 3)
    assert (after.floor_replica_hours, after.ceiling_replica_hours) == (24.0, 72.0)


def test_time_is_split_at_hour_boundaries():
    assert list(hours_split(3500.0, 7300.0)) == [(0.0, 100.0), (3600.0, 3600.0), (7200.0, 100.0)]
    assert list(hours_split(10.0, 10.0)) == []


@pytest.fixture
def running(client, ray):
    """An endpoint with 2 replicas running, and the meter's clock in hand."""
    ep = client.post("/api/v1/endpoints", json={"name": "chat", "template": "echo-chat", "scaling": {"replicas": 2}}).json()
    now = {"t": datetime(2026, 11, 23, 9, 59, 30, tzinfo=timezone.utc).timestamp()}
    client.rt.meter.clock = lambda: now["t"]
    client.rt.reconciler.tick()  # deployed; Ray reports 2 running replicas from here on
    client.rt.reconciler.tick()
    return ep, now


def usage(client, **params):
    params = {"since": "2026-11-23T00:00:00Z", "until": "2026-11-24T00:00:00Z", **params}
    r = client.get("/api/v1/usage", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_running_replicas_are_metered_hour_by_hour_and_priced(client, running):
    ep, now = running
    for step in (30, 30, 300, 30):  # over 10:00 UTC; a 300 s gap (the control plane was down) is not counted
        now["t"] += step
        client.rt.reconciler.tick()
    (line,) = usage(client)
    assert line["key"] == "chat" and line["replica_hours"] == near(2 * 90 / 3600)
    # echo-chat replicas take 0.1 vCPU: priced at the book's cpu price per vCPU-hour.
    assert line["unit_hours"] == near(0.1 * 2 * 90 / 3600)
    assert line["cost"] == near(0.045 * 0.1 * 2 * 90 / 3600)
    by_hour = usage(client, group_by="day")
    assert [x["key"] for x in by_hour] == ["2026-11-23"]
    first_half = usage(client, until="2026-11-23T10:00:00Z")[0]
    assert first_half["replica_hours"] == near(2 * 30 / 3600)  # only the part before 10:00

    r = client.patch("/api/v1/projects/default", json={"prices": {"cpu": 1.0}})
    assert r.status_code == 200 and r.json()["prices"] == {"cpu": 1.0}
    assert usage(client)[0]["cost"] == near(1.0 * 0.1 * 2 * 90 / 3600)
    assert client.patch("/api/v1/projects/default", json={"prices": {"cpu": -1}}).status_code == 422
    assert client.patch("/api/v1/projects/default", json={"prices": {"bad name!": 1}}).status_code == 422


def test_another_project_sees_none_of_it(client, running):
    ep, now = running
    now["t"] += 30
    client.rt.reconciler.tick()
    other = client.post("/api/v1/keys", json={"name": "b", "project": "team-b"}).json()["key"]
    h = {"Authorization": f"Bearer {other}"}
    r = client.get("/api/v1/usage", params={"since": "2026-11-23T00:00:00Z", "until": "2026-11-24T00:00:00Z"}, headers=h)
    assert r.status_code == 200 and r.json() == []
    assert client.get("/api/v1/usage", headers={"Authorization": ""}).status_code == 401
    bad = client.get("/api/v1/usage", params={"since": "2026-11-24T00:00:00Z", "until": "2026-11-23T00:00:00Z"})
    assert bad.status_code == 422 and "until" in bad.text
    assert client.get("/api/v1/usage", params={"group_by": "replica"}).status_code == 422


def test_a_tasks_projection_is_its_schedule_priced(client):
    client.post("/api/v1/endpoints", json={"name": "chat", "template": "echo-chat"})
    client.post(
        "/api/v1/tasks",
        json={"name": "office", "endpoint": "chat", "type": "daily", "timezone": "Europe/Paris", "schedule": PARIS},
    ).raise_for_status()
    r = client.get("/api/v1/tasks/office/projection", params={"days": 7})
    assert r.status_code == 200, r.text
    p = r.json()
    assert (p["unit"], p["units_per_replica"], p["price_per_unit_hour"], p["active"]) == ("cpu", 0.1, 0.045, False)
    assert len(p["days"]) == 7 and all(d["floor"]["replica_hours"] == 24.0 for d in p["days"])
    assert p["ceiling"]["cost"] == near(sum(d["ceiling"]["cost"] for d in p["days"]))
    other = client.post("/api/v1/keys", json={"name": "b", "project": "team-b"}).json()["key"]
    assert client.get("/api/v1/tasks/office/projection", headers={"Authorization": f"Bearer {other}"}).status_code == 404
    assert client.get("/api/v1/tasks/office/projection", params={"days": 0}).status_code == 422


def test_a_one_off_that_fired_long_ago_still_holds_its_bounds():
    spec = ScheduleSpec.build("one_off", "UTC", [{"time": "2026-11-01T12:00", "min_replicas": 1, "max_replicas": 3}])
    (day,) = commitments(spec, date(2026, 11, 20), 1, before=(0, 1))
    assert (day.floor_replica_hours, day.ceiling_replica_hours) == (24.0, 72.0)


def test_replicas_that_hold_resources_are_metered_not_only_running_ones():
    from rota.domain.reconcile import Observation, ObservedApp
    from rota.domain.specs import EndpointState
    from rota.services.monitoring import counts

    app = ObservedApp("ep-1", "DEPLOYING", "", None, 3, ("r1",), starting=1, pending=1, stopping=1)
    state = EndpointState(1, "ep-1", "/ep/1", "echo:app", "Echo", "running", None, {}, {}, {}, 5)
    (c,) = counts([state], Observation(True, {"ep-1": app})).values()
    assert (c.running, c.holding, c.target) == (1, 3, 3)  # loading and draining replicas hold their GPUs; pending ones do not


def test_day_bounds_draw_dst_days_at_their_length_with_the_bounds_in_force():
    from datetime import date

    from rota.domain.schedule import ScheduleSpec
    from rota.domain.usage import day_bounds

    spec = ScheduleSpec.build(
        "daily",
        "Europe/Paris",
        [{"time": "08:00", "min_replicas": 1, "max_replicas": 3}, {"time": "20:00", "min_replicas": 0, "max_replicas": 1}],
    )
    days = day_bounds(spec, date(2026, 3, 28), 3, (0, 0))
    assert [d.hours for d in days] == [24, 23, 24]  # clocks go forward on 29 March
    spring = days[1]
    # The night's bounds until 08:00 local, which is 7 h after midnight that day.
    assert [(g.start_h, g.end_h, g.min_replicas, g.max_replicas) for g in spring.segments] == [
        (0, 7, 0, 1),
        (7, 19, 1, 3),
        (19, 23, 0, 1),
    ]
    autumn = day_bounds(spec, date(2026, 10, 25), 1, (0, 0))[0]
    assert autumn.hours == 25 and [g.end_h for g in autumn.segments] == [9, 21, 25]
