"""A Serve replica is SIGKILLed while the OpenAI base URL is under constant load: only
requests in flight on that replica fail, and nothing fails once Serve has replaced it."""

import os
import signal
import threading
import time

import pytest

from support.endpoints import TEST_TEMPLATES, chat, wait_endpoint, wait_routed

pytestmark = pytest.mark.integration


def test_killing_a_replica_fails_only_its_in_flight_requests(servers, cluster, full):
    srv = servers(ROTA_TEMPLATES_PATH=str(TEST_TEMPLATES), ROTA_GATEWAY_REFRESH_S="0.5")
    r = srv.api.post(
        "/endpoints",
        json={
            "name": "steady",
            "template": "echo-chat",
            "routing_key": "steady",
            "scaling": {"replicas": 2},
            "engine": {"max_batch_size": 8},
        },
    )
    assert r.status_code == 201, r.text
    ep = wait_endpoint(srv, "steady", lambda e: e["status"] == "RUNNING" and e["replicas"]["running"] == 2, what="2 replicas")
    key = srv.admin_key
    wait_routed(cluster.serve_url, key, "steady")

    workers, per_request_s = 4, 0.3
    results: list[tuple[float, float, int, str]] = []  # (start, end, status, replica)
    stop = threading.Event()

    def load():
        while not stop.is_set():
            t = time.monotonic()
            try:
                resp = chat(cluster.serve_url, key, "steady", "x", timeout=30, delay_s=per_request_s)
                replica = resp.json()["choices"][0]["message"]["content"].split(":")[0] if resp.status_code == 200 else ""
                results.append((t, time.monotonic(), resp.status_code, replica))
            except Exception:
                results.append((t, time.monotonic(), 0, ""))

    threads = [threading.Thread(target=load) for _ in range(workers)]
    for th in threads:
        th.start()
    time.sleep(3)
    app = cluster.applications()[f"ep-{ep['id']}"]
    victim = next(r for r in app["deployments"]["OpenAIEcho"]["replicas"] if r["state"] == "RUNNING")
    killed_at = time.monotonic()
    os.kill(victim["pid"], signal.SIGKILL)
    wait_endpoint(
        srv,
        "steady",
        lambda e: e["replicas"]["running"] == 2 and victim["replica_id"] not in e["replicas"]["ids"],
        timeout=120,
        what="replica replaced",
    )
    recovered_at = time.monotonic()
    time.sleep(10 if full else 4)
    stop.set()
    for th in threads:
        th.join(60)

    failed = [x for x in results if x[2] != 200]
    in_flight_at_kill = [x for x in results if x[0] <= killed_at <= x[1]]
    assert len(failed) <= len(in_flight_at_kill) <= workers, (failed, len(in_flight_at_kill))
    assert all(x[0] <= killed_at + 1.0 for x in failed), "a request that started after the kill failed"
    after = [x for x in results if x[0] > recovered_at]
    assert after and all(x[2] == 200 for x in after)
    assert victim["replica_id"] not in {x[3] for x in after}
    print(
        f"{len(results)} requests, {len(failed)} failed (in flight at the kill: {len(in_flight_at_kill)}); "
        f"replaced in {recovered_at - killed_at:.1f}s; {len(after)} after recovery, all 200"
    )
