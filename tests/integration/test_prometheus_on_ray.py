"""ROTA_PROMETHEUS_URL: a real Prometheus scrapes the control plane's /metrics every second,
and an endpoint's monitoring series are read from it: the calls agree with the request
log, the replicas with Ray Serve, a replica's report comes back per replica; without
Prometheus the series fall back to the control plane's own store, and say so."""

import math
import time
from datetime import datetime, timezone

import httpx
import pytest

from support.endpoints import TEST_TEMPLATES, chat, wait_endpoint, wait_routed
from support.procs import free_port, wait_until
from support.prometheus import Prometheus

pytestmark = pytest.mark.integration

STEP = 2


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


@pytest.fixture
def watched(servers, cluster, tmp_path):
    """A control plane on the session's Ray cluster with an echo endpoint, and the
    Prometheus that scrapes it (and that it reads its series from)."""
    port, prom_port = free_port(), free_port()
    home = tmp_path / "rota"
    prom = Prometheus(f"127.0.0.1:{port}", home / "admin_key")
    prom.port, prom.url = prom_port, f"http://127.0.0.1:{prom_port}"
    srv = servers(
        home,
        ROTA_PORT=str(port),
        ROTA_TEMPLATES_PATH=str(TEST_TEMPLATES),
        ROTA_PROMETHEUS_URL=prom.url,
        ROTA_PROMETHEUS_SCRAPE_S="1",
    )
    prom.start()
    try:
        r = srv.api.post("/endpoints", json={"name": "watched", "template": "echo-chat", "routing_key": "watched"})
        assert r.status_code == 201, r.text
        wait_endpoint(srv, "watched", lambda e: e["status"] == "RUNNING", what="RUNNING")
        wait_routed(cluster.serve_url, srv.admin_key, "watched")  # the first call: its series exists from now on
        yield srv, prom
    finally:
        prom.stop()


def test_the_series_read_from_prometheus_agree_with_the_request_log_and_ray(watched, cluster):
    srv, prom = watched
    mine = 'project="default",endpoint="watched"'
    calls = f"sum(rota_gateway_requests_total{{{mine}}})"
    wait_until(lambda: prom.value(calls), 60, 0.5, "calls scraped")
    wait_until(lambda: prom.value(f'rota_endpoint_replicas{{{mine},state="running"}}') == 1, 60, 0.5, "replicas scraped")

    lo = math.ceil(time.time() / STEP) * STEP  # after every earlier call was scraped (waited for above)
    time.sleep(lo - time.time() + 0.5)
    before = prom.value(calls)
    key = srv.admin_key
    for i in range(12):
        assert chat(cluster.serve_url, key, "watched", f"plain {i}").status_code == 200
    for i in range(6):
        r = chat(cluster.serve_url, key, "watched", f"streamed {i}", stream=True)
        assert r.status_code == 200 and "[DONE]" in r.text
    ep = srv.api.get("/endpoints/watched").json()
    replica = ep["replicas"]["ids"][0]
    token = next(
        e["token"]
        for e in httpx.get(
            f"{srv.url}/internal/v1/routing", headers={"Authorization": f"Bearer {srv.gateway_token}"}, timeout=10
        ).json()["endpoints"]
        if e["routing_key"] == "watched"
    )
    r = httpx.post(  # what a vLLM replica reports of itself every 10 s
        f"{srv.url}/internal/v1/replica-stats",
        json={"replica": replica, "cpu_percent": 42.0, "memory_bytes": 3e8, "kv_cache_usage": 0.25, "engine_running": 2},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 204, r.text
    wait_until(lambda: prom.value(calls) == before + 18, 30, 0.5, "the window's calls scraped")
    hi = math.ceil((time.time() + 1) / STEP) * STEP
    time.sleep(hi - time.time() + 1.5)

    window = {"since": iso(lo), "until": iso(hi), "step": STEP}
    s = srv.api.get("/endpoints/watched/metrics", params=window).json()
    assert s["source"] == "prometheus" and s["source_error"] is None, s
    logged = srv.api.get("/endpoints/watched/requests", params={"since": iso(lo), "until": iso(hi), "limit": 1000}).json()
    assert len(logged["data"]) == 18
    assert sum(p["requests"] for p in s["points"]) == 18 and sum(p["ok"] for p in s["points"]) == 18
    busy = [p for p in s["points"] if p["requests"]]
    assert all(p["latency_ms"]["p50"] > 0 and p["error_rate"] == 0 for p in busy)
    assert any(p["ttft_ms"]["p50"] is not None for p in busy) and sum(p["output_tokens_per_s"] for p in busy) > 0
    assert {(p["replicas_running"], p["min_replicas"], p["max_replicas"]) for p in s["points"]} == {
        (1, 1, 1)
    }  # Ray Serve runs the one it fixes
    assert max(p["kv_cache_usage"] or 0 for p in s["points"]) == 0.25
    assert max(p["engine_running"] or 0 for p in s["points"]) == 2
    hw = {h["replica"]: h["points"] for h in s["hardware"]}
    assert list(hw) == [replica] and {p["cpu_percent"] for p in hw[replica]} == {42.0}

    other = srv.api.post("/keys", json={"name": "b", "project": "team-b"}).json()["key"]
    assert srv.api.get("/endpoints/watched/metrics", headers={"Authorization": f"Bearer {other}"}).status_code == 404

    before_it = {"since": iso(lo - 7200), "until": iso(lo - 3600), "step": 60}  # it did not exist yet: the store's
    s = srv.api.get("/endpoints/watched/metrics", params=before_it).json()
    assert s["source"] == "store" and "no series of this endpoint" in s["source_error"]
    r = srv.api.patch("/endpoints/watched", json={"name": "renamed"})  # its series are its id's: they stay
    assert r.status_code == 200, r.text
    s = srv.api.get("/endpoints/renamed/metrics", params=window).json()
    assert s["source"] == "prometheus" and sum(p["requests"] for p in s["points"]) == 18

    prom.stop()  # Prometheus away: the control plane's own figures, and why
    s = srv.api.get("/endpoints/renamed/metrics", params=window).json()
    assert s["source"] == "store" and "Prometheus did not answer" in s["source_error"]
    assert sum(p["requests"] for p in s["points"]) == 18
