"""An endpoint's monitoring series: calls from the request log, replicas from the samples
the reconciler takes, events on the same timeline."""

from datetime import datetime, timezone

from unit.test_logs import token_of
from unit.test_request_log_api import ingest, record

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc).timestamp()


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def test_the_series_of_an_endpoint_agree_with_its_request_log_and_replicas(client, ray):
    ep = client.post("/api/v1/endpoints", json={"name": "chat", "template": "echo-chat", "scaling": {"replicas": 2}}).json()
    clock = {"t": T0 + 5}
    client.rt.sampler.clock = lambda: clock["t"]
    client.rt.reconciler.tick()  # deploys: Ray reports 2 running from the next look on
    clock["t"] = T0 + 65
    client.rt.reconciler.tick()
    ingest(
        client,
        [
            record(endpoint_id=ep["id"], started_at=T0 + 10, duration_ms=100.0, ttft_ms=20.0, input_tokens=30, output_tokens=60),
            record(endpoint_id=ep["id"], started_at=T0 + 20, duration_ms=300.0, ttft_ms=40.0, input_tokens=30, output_tokens=0),
            record(endpoint_id=ep["id"], started_at=T0 + 30, status=429, error_code="rate_limit_exceeded", duration_ms=1.0),
            record(endpoint_id=ep["id"], started_at=T0 + 70, status=503, duration_ms=2.0),
            record(endpoint_id=None, started_at=T0 + 15, status=401),  # not this endpoint's
        ],
    )
    r = client.get("/api/v1/endpoints/chat/metrics", params={"since": iso(T0), "until": iso(T0 + 120), "step": 60})
    assert r.status_code == 200, r.text
    s = r.json()
    first, second = s["points"]
    assert (first["requests"], first["ok"], first["client_errors"], first["server_errors"]) == (3, 2, 1, 0)
    assert first["error_rate"] == round(1 / 3, 6) and first["requests_per_s"] == 0.05
    assert first["latency_ms"] == {"p50": 100.0, "p95": 300.0, "p99": 300.0} and first["ttft_ms"]["p50"] == 20.0
    assert first["input_tokens_per_s"] == 1.0 and first["output_tokens_per_s"] == 1.0
    assert (second["requests"], second["server_errors"], second["error_rate"]) == (1, 1, 1.0)
    assert sum(p["requests"] for p in s["points"]) == 4  # what the request log holds for it in the window
    assert (second["replicas_running"], second["min_replicas"], second["max_replicas"]) == (2, 2, 2)
    hour = client.get("/api/v1/endpoints/chat/metrics", params={"since": iso(T0 - 3600), "until": iso(T0), "step": 600}).json()
    assert "created" in [e["kind"] for e in hour["events"]]  # the endpoint's events, on the series' own timeline
    assert all(p["requests"] == 0 for p in hour["points"])


def test_the_series_are_the_projects_own_and_their_window_is_checked(client):
    client.post("/api/v1/endpoints", json={"name": "chat", "template": "echo-chat"})
    other = client.post("/api/v1/keys", json={"name": "b", "project": "team-b"}).json()["key"]
    assert client.get("/api/v1/endpoints/chat/metrics", headers={"Authorization": f"Bearer {other}"}).status_code == 404
    assert client.get("/api/v1/endpoints/chat/metrics", headers={"Authorization": ""}).status_code == 401
    too_fine = client.get("/api/v1/endpoints/chat/metrics", params={"since": iso(T0), "until": iso(T0 + 86_400), "step": 1})
    assert too_fine.status_code == 422 and too_fine.json()["error"]["field"] == "step"
    backwards = client.get("/api/v1/endpoints/chat/metrics", params={"since": iso(T0 + 60), "until": iso(T0)})
    assert backwards.status_code == 422 and backwards.json()["error"]["field"] == "until"
    default = client.get("/api/v1/endpoints/chat/metrics").json()
    assert default["step_s"] == 30.0 and len(default["points"]) == 120  # the last hour, about 240 points or fewer


def test_inter_token_latency_and_the_calls_in_flight_running_or_waiting(client):
    ep = client.post("/api/v1/endpoints", json={"name": "chat", "template": "echo-chat"}).json()
    calls = [
        # (started, duration s, queue ms, wake ms): in flight at the first step's end (T0 + 60)?
        (T0 - 100, 200.0, None, None),  # started before the window: running at T0 + 60, not one of its requests
        (T0 + 50, 20.0, 0.0, None),  # running at T0 + 60
        (T0 + 55, 30.0, 3000.0, 5000.0),  # queued then waking until T0 + 63: waiting at T0 + 60
        (T0 + 110, 30.0, None, None),  # running at T0 + 120
    ]
    records = [record(endpoint_id=ep["id"], started_at=at, duration_ms=s * 1000, queue_ms=q, wake_ms=w) for at, s, q, w in calls]
    # Streams: (1,100 - 100) ms over 10 gaps, and (2,100 - 100) over 10: 100 and 200 ms between tokens.
    records += [
        record(endpoint_id=ep["id"], started_at=T0 + 70, stream=True, duration_ms=1100.0, ttft_ms=100.0, output_tokens=11),
        record(endpoint_id=ep["id"], started_at=T0 + 80, stream=True, duration_ms=2100.0, ttft_ms=100.0, output_tokens=11),
        record(endpoint_id=ep["id"], started_at=T0 + 90, stream=True, duration_ms=50.0, ttft_ms=40.0, output_tokens=1),
    ]
    assert ingest(client, records).status_code == 200
    s = client.get("/api/v1/endpoints/chat/metrics", params={"since": iso(T0), "until": iso(T0 + 120), "step": 60}).json()
    first, second = s["points"]
    assert (first["requests_running"], first["requests_waiting"]) == (2, 1)
    assert (second["requests_running"], second["requests_waiting"]) == (1, 0)
    assert first["requests"] == 2 and second["requests"] == 4  # the call from before the window is not counted
    assert first["itl_ms"] == {"p50": None, "p95": None, "p99": None}
    assert (second["itl_ms"]["p50"], second["itl_ms"]["p95"]) == (100.0, 200.0)  # one token: no gap to time


def running(client, name, replicas=1):
    """An echo endpoint whose replicas the in-memory Ray runs (their ids, as Ray named them)."""
    body = {"name": name, "template": "echo-chat", "routing_key": name, "scaling": {"replicas": replicas}}
    assert client.post("/api/v1/endpoints", json=body).status_code == 201
    client.rt.reconciler.tick()
    client.rt.reconciler.tick()
    return client.get(f"/api/v1/endpoints/{name}").json()["replicas"]["ids"]


def test_what_replicas_report_of_themselves_is_in_the_series_per_step_and_per_replica(client):
    a, b = running(client, "chat", 2)
    (c,) = running(client, "other")
    clock = {"t": T0}
    client.rt.cluster.clock = lambda: datetime.fromtimestamp(clock["t"], timezone.utc)

    def report(t, replica, ep="chat", **figures):
        clock["t"] = t
        headers = {"Authorization": f"Bearer {token_of(client, ep)}"}
        r = client.post("/internal/v1/replica-stats", json={"replica": replica, **figures}, headers=headers)
        assert r.status_code == 204, r.text

    report(T0 + 5, a, cpu_percent=50.0, memory_bytes=1e9, kv_cache_usage=0.1, engine_running=1, engine_waiting=0)
    report(T0 + 15, a, cpu_percent=80.0, memory_bytes=1.1e9, kv_cache_usage=0.2, engine_running=2, engine_waiting=1)  # a's last
    report(T0 + 17, a, cpu_percent=99.0)  # 2 s after its last: not kept (one every 5 s at most)
    report(T0 + 20, b, cpu_percent=30.0, memory_bytes=2e9, kv_cache_usage=0.5, engine_running=3, engine_waiting=0)
    report(T0 + 70, b, cpu_percent=10.0, memory_bytes=2e9)  # no engine figures (not a vLLM replica)
    report(T0 + 30, c, "other", cpu_percent=99.0, kv_cache_usage=1.0)  # the other endpoint's token: its own series only

    def series(name):
        r = client.get(f"/api/v1/endpoints/{name}/metrics", params={"since": iso(T0), "until": iso(T0 + 120), "step": 60})
        assert r.status_code == 200, r.text
        return r.json()

    s = series("chat")
    first, second = s["points"]
    assert (first["kv_cache_usage"], first["engine_running"], first["engine_waiting"]) == (0.5, 5, 1)  # fullest; summed
    assert (second["kv_cache_usage"], second["engine_running"], second["engine_waiting"]) == (None, None, None)
    hw = {h["replica"]: h["points"] for h in s["hardware"]}
    assert set(hw) == {a, b} and [(p["cpu_percent"], p["memory_bytes"]) for p in hw[a]] == [(80.0, 1.1e9)]
    assert [p["cpu_percent"] for p in hw[b]] == [30.0, 10.0] and hw[b][0]["gpu_percent"] is None
    assert [h["replica"] for h in series("other")["hardware"]] == [c]


def test_only_an_endpoints_own_token_reports_for_its_own_replicas_and_bad_figures_name_their_field(client):
    (mine,) = running(client, "chat")
    (theirs,) = running(client, "other")
    member = client.post("/api/v1/keys", json={"name": "m", "project": "default"}).json()["key"]
    for token in ("", client.rt.internal_token, member, client.rt.settings.admin_key_path.read_text()):
        r = client.post(
            "/internal/v1/replica-stats", json={"replica": mine, "cpu_percent": 1.0}, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 401, (token[:6], r.text)
    ok = {"Authorization": f"Bearer {token_of(client, 'chat')}"}
    for field, value in (("kv_cache_usage", 1.5), ("cpu_percent", -1), ("replica", ""), ("endpoint_id", 2)):
        r = client.post("/internal/v1/replica-stats", json={"replica": mine, field: value}, headers=ok)
        assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
    for replica in (theirs, "made-up"):  # another endpoint's replica, or none Ray runs: refused, so names cannot pile up
        r = client.post("/internal/v1/replica-stats", json={"replica": replica, "cpu_percent": 1.0}, headers=ok)
        assert r.status_code == 409 and r.json()["error"]["field"] == "replica", r.text
    assert client.get("/api/v1/endpoints/chat/metrics").json()["hardware"] == []  # nothing was stored
    assert client.get("/api/v1/endpoints/other/metrics").json()["hardware"] == []
