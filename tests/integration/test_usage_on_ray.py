"""Usage metered on a real Ray cluster: the replica-hours Rota reports for a window are the
replicas Ray ran times the time they ran."""

import time
from datetime import datetime, timedelta, timezone

import pytest

from support.endpoints import TEST_TEMPLATES, wait_endpoint

pytestmark = pytest.mark.integration


def test_reported_replica_hours_are_what_ran(servers):
    srv = servers(ROTA_TEMPLATES_PATH=str(TEST_TEMPLATES))
    start = datetime.now(timezone.utc)
    r = srv.api.post("/endpoints", json={"name": "metered", "template": "echo-chat", "scaling": {"replicas": 2}})
    assert r.status_code == 201, r.text
    wait_endpoint(srv, "metered", lambda e: e["status"] == "RUNNING" and e["replicas"]["running"] == 2, what="2 replicas")
    t0 = time.monotonic()
    time.sleep(8)
    ran = time.monotonic() - t0
    srv.api.post("/endpoints/metered/stop").raise_for_status()
    wait_endpoint(srv, "metered", lambda e: e["status"] == "STOPPED", what="STOPPED")
    time.sleep(1)  # the reconciler's last observation is in
    params = {"since": start.isoformat(), "until": (datetime.now(timezone.utc) + timedelta(minutes=1)).isoformat()}
    (line,) = srv.api.get("/usage", params=params).json()
    measured = line["replica_hours"] * 3600
    # Two replicas for `ran` seconds at least; at most a few seconds more each: seen running
    # before the test saw it, and until Ray took them down after the stop.
    assert 2 * (ran - 1) <= measured <= 2 * (ran + 8), (measured, ran)
    assert line["unit_hours"] == pytest.approx(line["replica_hours"] * 0.1, abs=1e-5)
