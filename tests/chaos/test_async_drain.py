"""An async drain through crashes: requests queued to a sleeping endpoint drain while the
control plane is SIGKILLed again and again and one of the endpoint's replicas is killed.
Afterwards every request succeeded with its own answer, none is lost, each answer was
recorded once, and synchronous calls made during the drain never got a 429."""

import json
import os
import random
import signal
import threading
import time

import httpx
import pytest
from sqlalchemy import func, select

from rota.store.async_tables import AsyncRequestRow
from rota.store.db import Database
from rota.store.tables import RequestLogRow
from support.endpoints import TEST_TEMPLATES, chat, wait_endpoint, wait_relayed
from support.procs import wait_until

pytestmark = pytest.mark.integration


def test_a_drain_loses_nothing_through_control_plane_kills_and_a_replica_kill(servers, cluster, full):
    n, kills = (1000, 5) if full else (200, 2)
    rng = random.Random(7)
    srv = servers(ROTA_TEMPLATES_PATH=str(TEST_TEMPLATES), ROTA_GATEWAY_REFRESH_S="0.5")
    body = {
        "name": "drain",
        "template": "echo-chat",
        "routing_key": "drain",
        "scaling": {"min_replicas": 0, "max_replicas": 2, "cooldown_period_s": 1},
        "engine": {"max_batch_size": 4},
    }
    ep_id = srv.api.post("/endpoints", json=body).raise_for_status().json()["id"]
    wait_endpoint(srv, "drain", lambda e: e["status"] == "SLEEPING", timeout=180, what="SLEEPING")
    key = srv.admin_key
    auth = {"Authorization": f"Bearer {key}"}
    wait_relayed(cluster.serve_url, key)

    ids: dict[str, int] = {}
    with httpx.Client(base_url=cluster.serve_url, headers=auth, timeout=30) as http:
        for i in range(n):
            r = http.post(
                "/v1/async/chat/completions",
                json={"model": "drain", "messages": [{"role": "user", "content": f"m{i}"}], "delay_s": 0.3},
            )
            assert r.status_code == 202, r.text
            ids[r.json()["id"]] = i
    t0 = time.monotonic()

    sync: list[tuple[float, float, int]] = []
    stop = threading.Event()

    def synchronous():
        while not stop.is_set():
            t = time.monotonic()
            try:
                status = chat(cluster.serve_url, key, "drain", "now", timeout=60).status_code
            except httpx.HTTPError:
                status = 0
            sync.append((t, time.monotonic(), status))
            time.sleep(0.1)

    caller = threading.Thread(target=synchronous)
    caller.start()
    killed_replica_at = None
    for k in range(kills):
        time.sleep(rng.uniform(1.0, 2.5))
        srv.kill()
        if k == 0:  # and one replica, while the control plane is down
            app = wait_until(lambda: _running(cluster, ep_id), 60, what="a running replica")
            killed_replica_at = time.monotonic()
            os.kill(app["pid"], signal.SIGKILL)
        time.sleep(rng.uniform(0.2, 1.0))
        srv.start()

    db = Database(f"sqlite:///{srv.home / 'rota.db'}")

    def drained():
        with db.session() as s:
            return not s.scalar(select(func.count()).where(AsyncRequestRow.status.in_(["queued", "running"])))

    wait_until(drained, 300 if full else 120, 0.5, what="the queue drained")
    drain_s = time.monotonic() - t0
    stop.set()
    caller.join(90)

    with db.session() as s:
        rows = s.execute(select(AsyncRequestRow.id, AsyncRequestRow.status, AsyncRequestRow.response)).all()
        sends = s.scalar(select(func.count()).where(RequestLogRow.request_id.in_(list(ids)), RequestLogRow.status == 200))
    db.dispose()
    assert len(rows) == n and {r[0] for r in rows} == set(ids)  # none lost
    assert [r for r in rows if r[1] != "succeeded"] == []
    for rid, _, response in rows:  # each its own answer, recorded once
        assert json.loads(response)["choices"][0]["message"]["content"].endswith(f": m{ids[rid]}")
    statuses = [x[2] for x in sync]
    failed = [x for x in sync if x[2] != 200]
    assert 429 not in statuses, statuses
    # Only calls around the replica kill may fail, and not with a 429: one in flight on the
    # killed replica (a 500 from Serve, or a broken connection), and, since the endpoint may
    # have had that one replica only (it scales 0..2), 503s until Serve replaces it.
    assert all(x[1] >= killed_replica_at - 1 and x[0] <= killed_replica_at + 30 and x[2] in (0, 500, 502, 503) for x in failed), (
        killed_replica_at,
        failed,
    )
    print(
        f"{n} async requests drained in {drain_s:.1f}s through {kills} control plane kills and a replica kill; "
        f"{sends} answered sends in the request log (it may lag a second; above {n}: sent again after a crash cut them); "
        f"{len(sync)} synchronous calls, {statuses.count(200)} answered 200 "
        f"(p50 {_p50([x[1] - x[0] for x in sync]):.2f}s), none 429, {len(failed)} failed after the replica kill "
        f"(statuses {sorted({x[2] for x in failed})})"
    )


def _p50(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else float("nan")


def _running(cluster, ep_id: int) -> dict | None:
    app = cluster.applications().get(f"ep-{ep_id}")
    if not app:
        return None
    return next((r for r in app["deployments"]["OpenAIEcho"]["replicas"] if r["state"] == "RUNNING"), None)
