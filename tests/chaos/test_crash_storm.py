"""Crash during a fire storm: SIGKILL the control plane again and again while fires are
due; afterwards every scheduled fire was applied exactly once, and each restart caught
up in <= 5 s.

No Ray cluster: a fire never calls Ray, and this is about the scheduler and the store.
Entries of one task are further apart than the longest downtime, so no fire is
superseded by a later one (the catch-up policy applies only the latest due entry).
"""

import random
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from rota.store.db import Database
from rota.store.tables import RunRow, TaskRow
from support.procs import TEST_APPS, free_port

SPACING_S = 9  # between two entries of a task: more than any downtime below


def test_sigkill_storm_applies_every_fire_exactly_once(servers, tmp_path, full):
    kills = 20 if full else 3
    n_tasks = 20 if full else 5
    rng = random.Random(11)
    home = tmp_path / "rota"
    env = {
        "ROTA_RAY_ADDRESS": f"http://127.0.0.1:{free_port()}",
        "ROTA_SERVE_APPS_PATH": str(TEST_APPS),
        "ROTA_SWEEP_INTERVAL_S": "2",
        "ROTA_LOG_LEVEL": "WARNING",
    }
    srv = servers(home, **env)

    window = kills * 4.5 + 10
    t0 = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=8)
    expected = set()
    for i in range(n_tasks):
        first = t0 + timedelta(seconds=rng.randrange(SPACING_S))
        times = [first + timedelta(seconds=k * SPACING_S) for k in range(int(window // SPACING_S))]
        schedule = [{"time": at.strftime("%H:%M:%S"), "min_replicas": k % 2, "max_replicas": 2} for k, at in enumerate(times)]
        r = srv.api.post(
            "/tasks",
            json={
                "name": f"s{i}",
                "file_path": "echo",
                "deployment_name": "app",
                "type": "daily",
                "timezone": "UTC",
                "schedule": schedule,
            },
        )
        assert r.status_code == 201, r.text
        srv.api.post(f"/tasks/s{i}/activate").raise_for_status()
        expected |= {(f"s{i}", at) for at in times}

    catch_ups = []
    end = t0 + timedelta(seconds=window)
    for _ in range(kills):
        time.sleep(rng.uniform(1.0, 3.0))
        srv.kill()
        time.sleep(rng.uniform(0.0, 1.5))
        srv = servers(home, **env)
        catch_ups.append(srv.health()["scheduler"]["last_catch_up_s"])
    time.sleep(max(0.0, (end - datetime.now(timezone.utc)).total_seconds()) + 4)  # the last fires, then a sweep

    events, after = [], 0
    while page := srv.api.get("/events", params={"after_id": after, "limit": 10000}).json():
        events += page
        after = page[-1]["id"]
    srv.stop()

    due = {k for k in expected if k[1] <= end}
    applied = Counter(
        (e["task_name"], datetime.fromisoformat(e["data"]["scheduled_at"])) for e in events if e["kind"] in ("fired", "caught_up")
    )
    assert not [k for k in due if applied[k] != 1], "fires not applied exactly once (events)"
    assert all(e["data"].get("skipped", 0) == 0 for e in events if e["kind"] == "caught_up")
    db = Database(f"sqlite:///{home / 'rota.db'}")
    with db.session() as s:
        names = dict(s.execute(select(TaskRow.id, TaskRow.name)).all())
        runs = Counter((names[r.task_id], r.scheduled_at) for r in s.scalars(select(RunRow)).all())
    db.dispose()
    assert {k for k in runs if k in due} == due and all(runs[k] == 1 for k in due), "runs do not match the schedule"
    assert all(c is not None and c <= 5.0 for c in catch_ups), catch_ups
    print(
        f"{kills} SIGKILLs, {len(due)} fires due, all applied once; "
        f"{sum(1 for e in events if e['kind'] == 'caught_up')} on catch-up; max catch-up {max(catch_ups):.3f}s"
    )
