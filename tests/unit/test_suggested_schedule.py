"""Suggested schedules from a synthetic two-week request log: busy office hours in Paris,
one call a night. Every figure below is worked out by hand in the comments."""

import re
from datetime import date, datetime, timedelta, timezone

import pytest
import yaml
from sqlalchemy import insert

from rota.cli.suggest import header
from rota.store.tables import RequestLogRow

PARIS = timezone(timedelta(hours=1))  # all of November 2026 is winter time (UTC+1)
DAYS = [date(2026, 11, 9) + timedelta(days=i) for i in range(14)]  # the clock says 2026-11-23 09:00 in Paris


def synthetic_log(rt, endpoint_id):
    """Each day 09:00-17:00 a call every 10 s lasting 20 s (two in flight), the last one
    ending at 17:00:00; and one 2 s call at 03:00. Plus calls outside the analysed days."""
    rows, n = [], 0

    def call(start: datetime, seconds: float):
        nonlocal n
        n += 1
        rows.append(
            {
                "record_id": f"r{n}",
                "request_id": f"q{n}",
                "started_at": start.timestamp(),
                "endpoint_id": endpoint_id,
                "project_id": 1,
                "route": "/v1/chat/completions",
                "status": 200,
                "duration_ms": seconds * 1000,
                "finish_reasons": [],
            }
        )

    for day in DAYS:
        office = datetime(day.year, day.month, day.day, 9, tzinfo=PARIS)
        for k in range(8 * 360 - 1):  # 09:00:00 ... 16:59:40
            call(office + timedelta(seconds=10 * k), 20)
        call(datetime(day.year, day.month, day.day, 3, tzinfo=PARIS), 2)
    call(datetime(2026, 11, 23, 8, 30, tzinfo=PARIS), 3600)  # today: not a full day, not analysed
    call(datetime(2026, 11, 8, 12, tzinfo=PARIS), 3600)  # before the 14 days
    with rt.db.session() as s:
        s.execute(insert(RequestLogRow), rows)
    return n - 2


@pytest.fixture
def office(client, rt):
    ep = client.post(
        "/api/v1/endpoints",
        json={
            "name": "office",
            "template": "echo-chat",
            "scaling": {"min_replicas": 0, "max_replicas": 4, "target_ongoing_requests": 2, "cooldown_period_s": 60},
        },
    ).json()
    return ep, synthetic_log(rt, ep["id"])


def test_two_busy_weeks_suggest_office_hours_with_costs_and_waits_worked_out_by_hand(client, office):
    ep, calls = office
    r = client.get("/api/v1/endpoints/office/suggested-schedule", params={"timezone": "Europe/Paris", "ready_by": "false"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["days"][0] == "2026-11-09" and got["days"][-1] == "2026-11-22" and got["requests"] == calls == 14 * 2880
    # 09:00-17:00: 2 in flight (mean 2, a little less in the first and last hour): 2 x 1.2 / 2
    # = 1.2 -> 2 replicas. The night call fills 2 s of an hour (< 10 % of a replica): 0..1.
    assert got["schedule"] == [
        {"time": "09:00", "min_replicas": 2, "max_replicas": 2},
        {"time": "17:00", "min_replicas": 0, "max_replicas": 1},
    ]
    # Floor: 2 replicas x 8 h x 14 days = 224 replica-hours; a replica is 0.1 vCPU at $0.045.
    # Ceiling: 224 + 1 x 16 h x 14 = 448.
    s = got["suggested"]["projection"]
    assert s["floor"] == {"replica_hours": 224.0, "unit_hours": 22.4, "cost": pytest.approx(1.008)}
    assert s["ceiling"]["replica_hours"] == 448.0
    # The endpoint's own scaling (0..4, no task): floor 0, ceiling 4 x 24 x 14 = 1344.
    c = got["current"]
    assert c["schedule"] == "the endpoint's own scaling"
    assert c["projection"]["floor"]["replica_hours"] == 0.0 and c["projection"]["ceiling"]["replica_hours"] == 1344.0
    # No start measured: the default estimate, 300 s. Each morning the 09:00:00 call wakes
    # it and the 30 calls of 09:00:00-09:04:50 wait; the 03:00 call finds it asleep (the
    # last call ended 10 hours before, the cooldown is 60 s): 31 a day, 434 in all. The
    # suggestion without ready_by starts its replicas at 09:00 too: the same 434.
    assert c["cold_start_waits"] == 14 * 31 and got["suggested"]["cold_start_waits"] == 14 * 31
    # The CLI prints the same figures above the manifest.
    text = header(got)
    assert "from 40320 calls over 2026-11-09..2026-11-22 (Europe/Paris)," in text
    assert re.search(r"^#   suggested +224\.0\.\.448\.0 +1\.01\.\.2\.02 +434$", text, re.M), text
    assert re.search(r"^#   the endpoint's own scaling +0\.0\.\.1344\.0 +0\.00\.\.6\.05 +434$", text, re.M), text


def test_ready_by_suggestions_start_early_and_nobody_waits_in_office_hours(client, office):
    got = client.get("/api/v1/endpoints/office/suggested-schedule", params={"timezone": "Europe/Paris"}).json()
    assert got["schedule"][0] == {"time": "09:00", "min_replicas": 2, "max_replicas": 2, "ready_by": True}
    # 330 s early (300 s estimate + 30 s margin): 2 x 330 / 3600 replica-hours more a day.
    floor = got["suggested"]["projection"]["floor"]["replica_hours"]
    assert floor == pytest.approx(224 + 14 * 2 * 330 / 3600, abs=1e-4)
    assert got["suggested"]["cold_start_waits"] == 14  # only the night calls
    # The manifest applies as it is: a task driving the endpoint, created idle.
    (task,) = got["manifest"]["tasks"]
    assert task == {
        "name": "office-suggested",
        "endpoint": "office",
        "type": "daily",
        "timezone": "Europe/Paris",
        "schedule": got["schedule"],
        "active": False,
    }
    r = client.post("/api/v1/tasks", json={k: v for k, v in task.items() if k != "active"})
    assert r.status_code == 201, r.text
    # Once it drives the endpoint (active), it is what "current" is compared with.
    client.post("/api/v1/tasks/office-suggested/activate")
    again = client.get("/api/v1/endpoints/office/suggested-schedule").json()  # its task's zone by default
    assert again["timezone"] == "Europe/Paris" and again["current"]["schedule"] == "task office-suggested"
    assert again["current"]["cold_start_waits"] == 14
    assert yaml.safe_load(yaml.safe_dump(got["manifest"])) == got["manifest"]


@pytest.mark.parametrize(
    "params, field",
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"days": 0}, "days"),
        ({"days": 91}, "days"),
        ({"period_minutes": 7}, "period_minutes"),
        ({"headroom": -1}, "headroom"),
        ({"ready_by": "maybe"}, "ready_by"),
    ],
)
def test_bad_parameters_name_their_field(client, params, field):
    client.post("/api/v1/endpoints", json={"name": "office", "template": "echo-chat"})
    r = client.get("/api/v1/endpoints/office/suggested-schedule", params=params)
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text


def test_no_traffic_suggests_sleeping_all_day(client):
    client.post("/api/v1/endpoints", json={"name": "quiet", "template": "echo-chat"})
    got = client.get("/api/v1/endpoints/quiet/suggested-schedule").json()
    assert got["requests"] == 0 and got["schedule"] == [{"time": "00:00", "min_replicas": 0, "max_replicas": 1}]


def test_only_its_own_project_and_a_valid_key(client, office):
    client.post("/api/v1/projects", json={"name": "other"})
    key = client.post("/api/v1/keys", json={"name": "k", "project": "other"}).json()["key"]
    url = "/api/v1/endpoints/office/suggested-schedule"
    assert client.get(url, headers={"Authorization": f"Bearer {key}"}).status_code == 404
    ep_id = office[0]["id"]
    assert (
        client.get(f"/api/v1/endpoints/{ep_id}/suggested-schedule", headers={"Authorization": f"Bearer {key}"}).status_code == 404
    )
    assert client.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get(url, headers={"Authorization": ""}).status_code == 401


def test_more_calls_than_it_analyses_at_once_asks_for_fewer_days(client, office, monkeypatch):
    monkeypatch.setattr("rota.services.suggestions.MAX_CALLS", 10_000)
    r = client.get("/api/v1/endpoints/office/suggested-schedule", params={"days": 14})
    assert r.status_code == 422 and r.json()["error"]["field"] == "days" and "40320 calls" in r.json()["error"]["message"]
    assert client.get("/api/v1/endpoints/office/suggested-schedule", params={"days": 3}).status_code == 200  # 8,640 calls
