"""Control-plane API latency and create throughput with 10,000 tasks in the store.

Starts `rota server` (SQLite, its own ports and home, no Ray cluster: the API never waits
on Ray) on a store pre-filled with 10,000 tasks, then measures over HTTP, with the
admin key: list (paginated, 50 per page, random offsets; and a name search), get (by
id), and create throughput (POST /api/v1/tasks, sequential and 4 concurrent clients).
Targets: p99 <= 50 ms for list and get; >= 200 creates/s on 2 cores.

    .venv/bin/python bench/control_plane_api.py [--tasks 10000] [--requests 300] [--creates 400]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from common import pct, table, write_result  # noqa: E402
from support.procs import TEST_APPS, RotaServer, free_port  # noqa: E402

SCHEDULE = [{"time": "08:00", "min_replicas": 1, "max_replicas": 4}, {"time": "20:00", "min_replicas": 0, "max_replicas": 1}]


def prefill(home: Path, n: int) -> None:
    """n idle daily tasks, each with its own application's endpoint (waiting for its first
    fire), written as the API writes them (same rows, one transaction)."""
    from rota.crypto import Cipher, digest
    from rota.store.db import Database
    from rota.store.tables import EndpointRow, TaskRow, utcnow

    cipher = Cipher.load(None, home / "secret_key")  # the server finds the same key there
    db = Database(f"sqlite:///{home / 'rota.db'}")
    db.migrate(cipher)
    now = utcnow()
    with db.session() as s:
        for i in range(n):
            name, token = f"pre-{i:05d}", f"bench-token-{i}"
            task = TaskRow(project_id=1, name=name, endpoint_id=0, type="daily", timezone="Europe/Paris", schedule=SCHEDULE,
                           status="idle", created_at=now, updated_at=now)  # fmt: skip
            s.add(task)
            s.flush()
            ep = EndpointRow(
                project_id=1, name=name, routing_key=name, kind="application", owner_task_id=task.id, gpu_count=0,
                file_path="echo", deployment_name="app", ingress="Echo", args={}, resources={}, engine={}, scaling=None, env={},
                app_name=f"pre-app-{i}", route_prefix=f"/{name}", token=cipher.encrypt(token), token_hash=digest(token),
                per_replica=5, desired="running", generation=1, status="PENDING", replica_ids=[], created_at=now, updated_at=now,
            )  # fmt: skip
            s.add(ep)
            s.flush()
            task.endpoint_id = ep.id
    db.dispose()


def timed(client: httpx.Client, method: str, path: str, **kw) -> float:
    t = time.perf_counter()
    r = client.request(method, path, **kw)
    elapsed = (time.perf_counter() - t) * 1000
    r.raise_for_status()
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=300, help="measured requests per read kind")
    ap.add_argument("--creates", type=int, default=400, help="creates per mode")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "control_plane_api.json"))
    a = ap.parse_args()
    rng = random.Random(3)
    home = Path(tempfile.mkdtemp(prefix="rota-bench-api-", dir="/tmp"))
    prefill(home, a.tasks)
    srv = RotaServer(
        home,
        {
            "ROTA_RAY_ADDRESS": f"http://127.0.0.1:{free_port()}",
            "ROTA_SERVE_APPS_PATH": str(TEST_APPS),
            "ROTA_LOG_LEVEL": "WARNING",
            "ROTA_RECONCILE_INTERVAL_S": "2",
        },
    )
    rows: dict[str, dict] = {}
    try:
        srv.start()
        c = httpx.Client(base_url=srv.url + "/api/v1", headers=srv.api.headers, timeout=30)
        for _ in range(20):  # warm up
            timed(c, "GET", "/tasks", params={"limit": 50})
        reads = {
            "list 50/page": lambda: timed(c, "GET", "/tasks", params={"limit": 50, "offset": rng.randrange(a.tasks - 50)}),
            "list search": lambda: timed(c, "GET", "/tasks", params={"search": f"pre-0{rng.randrange(100):02d}", "limit": 50}),
            "get by id": lambda: timed(c, "GET", f"/tasks/{rng.randrange(1, a.tasks + 1)}"),
            "get by name": lambda: timed(c, "GET", f"/tasks/pre-{rng.randrange(a.tasks):05d}"),
        }
        for name, fn in reads.items():
            ms = [fn() for _ in range(a.requests)]
            rows[name] = {"p50_ms": pct(ms, 0.5), "p99_ms": pct(ms, 0.99), "max_ms": max(ms), "n": len(ms)}

        def create(i: int, client: httpx.Client) -> float:
            return timed(
                client,
                "POST",
                "/tasks",
                json={
                    "name": f"new-{i:06d}",
                    "file_path": "echo",
                    "deployment_name": "app",
                    "type": "daily",
                    "timezone": "UTC",
                    "schedule": SCHEDULE,
                },
            )

        t = time.perf_counter()
        ms = [create(i, c) for i in range(a.creates)]
        rows["create (1 client)"] = {
            "p50_ms": pct(ms, 0.5),
            "p99_ms": pct(ms, 0.99),
            "max_ms": max(ms),
            "n": len(ms),
            "per_s": a.creates / (time.perf_counter() - t),
        }
        clients = [httpx.Client(base_url=c.base_url, headers=c.headers, timeout=30) for _ in range(4)]
        t = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            ms = list(pool.map(lambda i: create(a.creates + i, clients[i % 4]), range(a.creates)))
        rows["create (4 clients)"] = {
            "p50_ms": pct(ms, 0.5),
            "p99_ms": pct(ms, 0.99),
            "max_ms": max(ms),
            "n": len(ms),
            "per_s": a.creates / (time.perf_counter() - t),
        }
        total = c.get("/tasks", params={"limit": 1}).json()["total"]
    finally:
        srv.stop()

    read_p99 = max(r["p99_ms"] for k, r in rows.items() if not k.startswith("create"))
    best_create = max(r["per_s"] for k, r in rows.items() if k.startswith("create"))
    result = {
        "benchmark": "control_plane_api",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "tasks_in_store": a.tasks,
        "tasks_after": total,
        "results": rows,
        "targets": {"read_p99_ms": 50, "creates_per_s": 200},
        "met": {"read_p99_ms": read_p99 <= 50, "creates_per_s": best_create >= 200},
    }
    out = write_result(a.out, result)
    lines = [["request", "n", "p50 ms", "p99 ms", "max ms", "per s"]]
    for k, r in rows.items():
        lines.append(
            [
                k,
                str(r["n"]),
                f"{r['p50_ms']:.1f}",
                f"{r['p99_ms']:.1f}",
                f"{r['max_ms']:.1f}",
                f"{r['per_s']:.0f}" if "per_s" in r else "",
            ]
        )
    print(table(lines))
    print(
        f"targets: read p99 <= 50 ms: {result['met']['read_p99_ms']} ({read_p99:.1f}); "
        f">= 200 creates/s: {result['met']['creates_per_s']} ({best_create:.0f})\nwrote {out}"
    )
    return 0 if all(result["met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
