"""Crash during a fire storm: SIGKILL the control plane again and again while fires are
due; afterwards every scheduled fire was applied exactly once, and each restart caught
up in <= 5 s.

No Ray cluster: a fire never calls Ray, and this is about the scheduler and the store.
Entries of one task are further apart than the longest downtime, so no fire is
superseded by a later one (the catch-up policy applies only the latest due entry).
"""

import random
import time
from datetime import datetime, timezone

from support.procs import TEST_APPS, free_port
from support.storm import all_events, daily_storm, not_applied_once


def test_sigkill_storm_applies_every_fire_exactly_once(servers, tmp_path, full):
    kills = 20 if full else 2  # small: the leader failover test SIGKILLs control planes during a storm too
    rng = random.Random(11)
    home = tmp_path / "rota"
    env = {
        "ROTA_RAY_ADDRESS": f"http://127.0.0.1:{free_port()}",
        "ROTA_SERVE_APPS_PATH": str(TEST_APPS),
        "ROTA_SWEEP_INTERVAL_S": "2",
        "ROTA_LOG_LEVEL": "WARNING",
    }
    srv = servers(home, **env)

    def call(method, path, **kw):
        r = srv.api.request(method, path, **kw)
        assert r.status_code < 300, r.text
        return r.json() if r.content else None

    due, end = daily_storm(call, 20 if full else 5, kills * 4.5 + 10, rng)
    catch_ups = []
    for _ in range(kills):
        time.sleep(rng.uniform(1.0, 3.0))
        srv.kill()
        time.sleep(rng.uniform(0.0, 1.5))
        srv = servers(home, **env)
        catch_ups.append(srv.health()["scheduler"]["last_catch_up_s"])
    time.sleep(max(0.0, (end - datetime.now(timezone.utc)).total_seconds()) + 4)  # the last fires, then a sweep

    events = all_events(lambda path, **kw: call("GET", path, **kw))
    srv.stop()
    assert not_applied_once(due, events, f"sqlite:///{home / 'rota.db'}") == {"events": [], "runs": [], "skipped": []}
    assert all(c is not None and c <= 5.0 for c in catch_ups), catch_ups
    print(
        f"{kills} SIGKILLs, {len(due)} fires due, all applied once; "
        f"{sum(1 for e in events if e['kind'] == 'caught_up')} on catch-up; max catch-up {max(catch_ups):.3f}s"
    )
