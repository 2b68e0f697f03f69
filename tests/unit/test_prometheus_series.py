"""Monitoring read from Prometheus (ROTA_PROMETHEUS_URL): the gauges the leader adds to
``/metrics`` for it, the PromQL it sends (an endpoint's names are quoted, never spliced),
and how Prometheus' answers become the series' points. A real Prometheus reads them in
``tests/integration/test_prometheus_on_ray.py``."""

import time
from datetime import datetime, timezone

import pytest

from rota.services.monitoring import Point
from rota.services.prometheus import apply, label, queries
from unit.test_logs import token_of
from unit.test_metrics import scrape, value
from unit.test_monitoring import running

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc).timestamp()


def test_the_leader_exposes_each_endpoints_replicas_and_what_each_replica_reported(client, monkeypatch):
    a, b = running(client, "chat", 2)
    (c,) = running(client, "other")
    client.rt.cluster.clock = lambda: datetime.now(timezone.utc)
    headers = {"Authorization": f"Bearer {token_of(client, 'chat')}"}
    figures = {"cpu_percent": 55.0, "memory_bytes": 2e9, "kv_cache_usage": 0.4, "engine_running": 3, "engine_waiting": 1}
    assert client.post("/internal/v1/replica-stats", json={"replica": a, **figures}, headers=headers).status_code == 204
    assert client.post("/internal/v1/replica-stats", json={"replica": b, "cpu_percent": 5.0}, headers=headers).status_code == 204
    m = scrape(client)
    ids = {n: str(client.get(f"/api/v1/endpoints/{n}").json()["id"]) for n in ("chat", "other")}
    chat = {"project": "default", "endpoint": "chat", "endpoint_id": ids["chat"]}
    assert value(m, "rota_endpoint_replicas", **chat, state="running") == 2
    assert value(m, "rota_endpoint_replicas", **chat, state="max") == 2
    assert value(m, "rota_endpoint_replicas", project="default", endpoint="other", endpoint_id=ids["other"], state="running") == 1
    assert value(m, "rota_replica_kv_cache_usage", **chat, replica=a) == 0.4
    assert value(m, "rota_replica_engine_requests", **chat, replica=a, state="waiting") == 1
    assert value(m, "rota_replica_cpu_percent", **chat, replica=b) == 5.0
    assert ("rota_replica_kv_cache_usage", tuple(sorted({**chat, "replica": b}.items()))) not in m  # b said nothing of it
    assert not any(labels and dict(labels).get("replica") == c for _, labels in m)  # c reported nothing

    with monkeypatch.context() as mp:  # a standby: the leader's figures, never twice
        mp.setattr(type(client.rt.leadership), "leading", property(lambda self: False))
        m = scrape(client)
    assert not [name for name, _ in m if name.startswith(("rota_endpoint_replicas", "rota_replica_"))]
    client.rt._seen = (time.time() - 120, client.rt._seen[1])  # the last look at Ray is old: not shown as now
    assert value(scrape(client), "rota_endpoint_replicas", **chat, state="running") == 0


def test_the_promql_selects_the_endpoint_by_id_and_looks_back_past_the_scrape_interval():
    assert label('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'  # a value is quoted, never spliced
    q = queries(42, 10, 30)
    assert all('{endpoint_id="42"}' in text for text in q.values())
    assert "offset 10000ms" in q["calls"] and "[30000ms]" in q["replicas"]  # counts per step; gauges found
    assert "[60000ms]" in queries(42, 60, 30)["kv"]


def points(n, step=60.0):
    return [Point(time=datetime.fromtimestamp(T0 + i * step, timezone.utc)) for i in range(n)]


def test_prometheus_answers_become_points_counted_per_step_and_hardware_per_replica():
    end = [T0 + 60, T0 + 120]  # each step's figures are evaluated at its end
    results = {
        "calls": [({"code": "200"}, [(end[0], 9.0), (end[1], 3.0)]), ({"code": "503"}, [(end[1], 1.0)])],
        "tokens": [({"direction": "output"}, [(end[0], 120.0)])],
        "latency_p50": [({}, [(end[0], 0.25), (end[1], float("nan"))])],
        "replicas": [({"state": s}, [(end[0], v), (end[1], v)]) for s, v in (("running", 2), ("min", 1), ("max", 3))],
        "kv": [({}, [(end[1], 0.5)])],
        "engine": [({"state": "waiting"}, [(end[0], 4.0)])],
        "cpu_percent": [({"replica": "r1"}, [(end[0], 80.0), (end[1], 90.0)]), ({"replica": "r2"}, [(end[1], 10.0)])],
        "memory_bytes": [({"replica": "r1"}, [(end[1], 1e9)])],
    }
    p = points(2)
    hardware = apply(p, results, 60.0)
    assert (p[0].requests, p[0].ok, p[0].requests_per_s, p[0].error_rate) == (9, 9, 0.15, 0.0)
    assert (p[1].requests, p[1].server_errors, p[1].error_rate) == (4, 1, 0.25)
    assert p[0].latency_ms.p50 == 250.0 and p[1].latency_ms.p50 is None  # NaN: no call to take a quantile of
    assert p[0].output_tokens_per_s == 2.0 and p[1].output_tokens_per_s == 0.0
    assert (p[0].replicas_running, p[0].min_replicas, p[0].max_replicas, p[0].replicas_target) == (2, 1, 3, None)
    assert (p[0].kv_cache_usage, p[1].kv_cache_usage, p[0].engine_waiting, p[0].engine_running) == (None, 0.5, 4.0, None)
    hw = {h.replica: h.points for h in hardware}
    assert [(x.cpu_percent, x.memory_bytes) for x in hw["r1"]] == [(80.0, None), (90.0, 1e9)]
    assert [x.time for x in hw["r2"]] == [p[1].time]


def test_a_prometheus_that_fails_is_left_alone_a_while_and_every_failure_is_a_prometheus_error(tmp_path):
    from rota.services.prometheus import Prometheus, PrometheusError
    from support.procs import free_port

    clock = {"t": 1000.0}
    prom = Prometheus(f"http://127.0.0.1:{free_port()}", timeout_s=2, clock=lambda: clock["t"])  # nothing listens
    with pytest.raises(PrometheusError, match="ConnectError"):
        prom.fill(points(2), 7, 60.0)
    clock["t"] += 10  # within the rest: not asked at all
    with pytest.raises(PrometheusError, match="asked again after 30 s"):
        prom.fill(points(2), 7, 60.0)
    clock["t"] += 30
    prom.token_path = tmp_path / "missing-token"  # a file that cannot be read: an error of its own, not a crash
    with pytest.raises(PrometheusError, match="FileNotFoundError"):
        prom.fill(points(2), 7, 60.0)
