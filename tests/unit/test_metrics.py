"""``/metrics``: the control plane's and the base URL's series, as Prometheus reads them."""

from datetime import datetime, timedelta, timezone

from prometheus_client.parser import text_string_to_metric_families

from unit.test_logs import token_of
from unit.test_request_log_api import ingest, record


def scrape(client) -> dict[tuple[str, tuple], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_only_an_admin_key_reads_the_metrics(client):
    assert client.get("/metrics", headers={"Authorization": ""}).status_code == 401
    member = client.post("/api/v1/keys", json={"name": "m", "project": "team-b"}).json()["key"]
    r = client.get("/metrics", headers={"Authorization": f"Bearer {member}"})
    assert r.status_code == 403 and "admin" in r.json()["error"]["message"]  # they name every project's endpoints


def test_the_base_urls_calls_are_counted_from_the_request_log_once(client):
    ep = client.post("/api/v1/endpoints", json={"name": "chat", "template": "echo-chat", "routing_key": "chat"}).json()
    batch = [
        record(endpoint_id=ep["id"], duration_ms=120.0, ttft_ms=30.0, input_tokens=7, output_tokens=3),
        record(endpoint_id=ep["id"], duration_ms=80.0, wake_ms=45_000.0),
        record(endpoint_id=ep["id"], status=429, error_code="rate_limit_exceeded", duration_ms=1.0),
        record(project_id=None, status=401, error_code="invalid_api_key", duration_ms=1.0),
        record(status=404, error_code="model_not_found", duration_ms=1.0),  # no endpoint: the caller's project
    ]
    ingest(client, batch)
    ingest(client, batch)  # sent again: stored once, counted once
    m = scrape(client)
    mine = {"project": "default", "endpoint": "chat", "endpoint_id": str(ep["id"])}
    assert value(m, "rota_gateway_requests_total", **mine, code="200", error="") == 2
    assert value(m, "rota_gateway_requests_total", **mine, code="429", error="rate_limit_exceeded") == 1
    assert (
        value(m, "rota_gateway_requests_total", project="-", endpoint="", endpoint_id="", code="401", error="invalid_api_key")
        == 1
    )
    assert (
        value(
            m, "rota_gateway_requests_total", project="default", endpoint="", endpoint_id="", code="404", error="model_not_found"
        )
        == 1
    )
    assert value(m, "rota_gateway_request_duration_seconds_count", **mine) == 3
    assert value(m, "rota_gateway_request_duration_seconds_bucket", **mine, le="0.1") == 2  # 80 ms and 1 ms
    assert value(m, "rota_gateway_time_to_first_token_seconds_count", **mine) == 1
    assert value(m, "rota_gateway_wake_seconds_bucket", **mine, le="30.0") == 0
    assert value(m, "rota_gateway_wake_seconds_bucket", **mine, le="60.0") == 1
    assert value(m, "rota_gateway_tokens_total", **mine, direction="output") == 3
    assert value(m, "rota_request_log_records_total") == 5 and value(m, "rota_request_log_duplicates_total") == 5
    # A batch sent again after a failure, with new records behind it: the new ones are counted, the old once.
    ingest(client, [*batch, record(endpoint_id=ep["id"], duration_ms=5.0)])
    m = scrape(client)
    assert value(m, "rota_gateway_requests_total", **mine, code="200", error="") == 3
    assert value(m, "rota_request_log_records_total") == 6


def test_fires_their_lateness_and_the_state_of_tasks_and_endpoints(client, clock):
    client.post("/api/v1/endpoints", json={"name": "chat", "template": "echo-chat", "routing_key": "chat"})
    client.post(
        "/api/v1/tasks",
        json={
            "name": "peak",
            "endpoint": "chat",
            "type": "daily",
            "timezone": "UTC",
            "schedule": [{"time": "09:00", "min_replicas": 2, "max_replicas": 4}],
        },
    )
    client.post("/api/v1/tasks/peak/activate").raise_for_status()
    clock.now = clock.now.replace(hour=9) + timedelta(seconds=3)  # three seconds late
    client.rt.scheduler.catch_up(trigger="catch_up")
    client.rt.reconciler.tick()
    m = scrape(client)
    assert value(m, "rota_fires_total", trigger="catch_up") == 1
    assert value(m, "rota_fire_lateness_seconds_bucket", trigger="catch_up", le="2.5") == 0
    assert value(m, "rota_fire_lateness_seconds_bucket", trigger="catch_up", le="5.0") == 1
    assert value(m, "rota_tasks", status="active") == 1
    assert sum(v for (name, _), v in m.items() if name == "rota_endpoints") == 1
    assert value(m, "rota_ray_puts_total") >= 1 and value(m, "rota_reconcile_ticks_total") >= 1
    assert value(m, "rota_ray_reachable") == 1
    assert (value(m, "rota_leader"), value(m, "rota_leader_epoch"), value(m, "rota_leader_elections_total")) == (1, 1, 1)


def test_every_series_the_grafana_dashboard_charts_is_one_rota_exports(client, clock):
    import json
    import re

    from support.procs import REPO

    test_fires_their_lateness_and_the_state_of_tasks_and_endpoints(client, clock)
    ep = client.get("/api/v1/endpoints/chat").json()
    ingest(client, [record(endpoint_id=ep["id"], ttft_ms=5.0, wake_ms=10.0, input_tokens=1, output_tokens=1)])
    client.rt.cluster.clock = lambda: datetime.now(timezone.utc)  # a replica's report, as it is sent now
    figures = {"cpu_percent": 1.0, "memory_bytes": 1.0, "gpu_percent": 1.0, "gpu_memory_bytes": 1.0, "kv_cache_usage": 0.1}
    report = {"replica": ep["replicas"]["ids"][0], **figures, "engine_running": 1, "engine_waiting": 0}
    headers = {"Authorization": f"Bearer {token_of(client, 'chat')}"}
    assert client.post("/internal/v1/replica-stats", json=report, headers=headers).status_code == 204
    exported = {re.sub(r"_(bucket|count|sum)$", "", name) for name, _ in scrape(client)}
    dashboard = json.loads((REPO / "docs" / "grafana" / "rota.json").read_text())
    charted = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for p in dashboard["panels"]
        for t in p["targets"]
        for name in re.findall(r"\brota_[a-z_]+", t["expr"])
    }
    assert len(charted) >= 12 and charted <= exported, charted - exported
