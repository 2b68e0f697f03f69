"""The request log at scale: ingest rate, and filtered pages with 1,000,000 records in SQLite.

Starts `rota server` (SQLite, its own ports and home, no Ray cluster) with 10 endpoints in
two projects, sends 1,000,000 records the way the gateway does (POST /internal/v1/requests,
batches of 2,000, with the gateway's token), measuring records stored per second, then
reads pages over HTTP with an ordinary project key: an endpoint's newest page, the same
filtered by status class, by the last hour, by key prefix, the project's page, five pages
deep through cursors, one request by id (a new one, a month-old one, one not there), and a
text search. Targets: ingest >= 2,000 records/s; a filtered page p99 <= 50 ms.

    .venv/bin/python bench/request_log.py [--records 1000000] [--requests 200]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from common import pct, table, write_result  # noqa: E402
from support.endpoints import TEST_TEMPLATES  # noqa: E402
from support.procs import TEST_APPS, RotaServer, free_port  # noqa: E402

DAYS = 30


def records(rng: random.Random, n: int, endpoints: list[tuple[int, int]], keys: list[str], now: float):
    for _ in range(n):
        ep, project = rng.choice(endpoints)
        status = rng.choices([200, 400, 429, 503], weights=[90, 4, 5, 1])[0]
        yield {
            "record_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "request_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "started_at": now - rng.random() * DAYS * 86_400,
            "project_id": project,
            "key_id": 1,
            "key_prefix": rng.choice(keys),
            "endpoint_id": ep,
            "model": f"ep-{ep}",
            "route": "/v1/chat/completions",
            "status": status,
            "error_code": None
            if status == 200
            else {400: "BadRequestError", 429: "rate_limit_exceeded", 503: "endpoint_waking"}[status],
            "stream": rng.random() < 0.5,
            "duration_ms": rng.expovariate(1 / 400),
            "ttft_ms": rng.expovariate(1 / 40),
            "input_tokens": rng.randrange(10, 2000),
            "output_tokens": rng.randrange(1, 500),
            "finish_reasons": ["stop"],
            "replica_id": f"r{rng.randrange(20)}",
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=200, help="measured requests per read kind")
    ap.add_argument("--batch", type=int, default=2_000)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "request_log.json"))
    a = ap.parse_args()
    rng = random.Random(7)
    home = Path(tempfile.mkdtemp(prefix="rota-bench-reqlog-", dir="/tmp"))
    srv = RotaServer(
        home,
        {
            "ROTA_RAY_ADDRESS": f"http://127.0.0.1:{free_port()}",
            "ROTA_SERVE_APPS_PATH": os.pathsep.join([str(REPO / "serve_apps"), str(TEST_APPS)]),
            "ROTA_TEMPLATES_PATH": str(TEST_TEMPLATES),
            "ROTA_LOG_LEVEL": "WARNING",
            "ROTA_RECONCILE_INTERVAL_S": "5",
        },
    )
    rows: dict[str, dict] = {}
    try:
        srv.start()
        member = srv.api.post("/keys", json={"name": "bench", "project": "team-b"}).json()
        mine = {"Authorization": f"Bearer {member['key']}"}
        endpoints = []
        for i in range(10):
            headers = mine if i < 5 else None
            e = srv.api.post("/endpoints", json={"name": f"e{i}", "template": "echo-chat"}, headers=headers).json()
            endpoints.append((e["id"], 2 if i < 5 else 1))
        keys = [f"rota_k{i:07d}" for i in range(8)]
        gw = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.gateway_token}"}, timeout=120)
        now = time.time()
        source = records(rng, a.records, endpoints, keys, now)
        t0, sent = time.perf_counter(), 0
        while sent < a.records:
            batch = [next(source) for _ in range(min(a.batch, a.records - sent))]
            r = gw.post("/internal/v1/requests", json={"records": batch, "dropped": 0})
            r.raise_for_status()
            sent += len(batch)
        ingest_s = time.perf_counter() - t0
        rows["ingest"] = {"n": sent, "per_s": sent / ingest_s, "seconds": ingest_s}
        print(f"ingested {sent} records in {ingest_s:.0f}s ({sent / ingest_s:.0f}/s)", flush=True)

        c = httpx.Client(base_url=srv.url + "/api/v1", headers=mine, timeout=60)
        hour_ago = datetime.fromtimestamp(now - 3600, timezone.utc).isoformat()
        some_id = c.get("/endpoints/e0/requests", params={"limit": 1}).json()["data"][0]["request_id"]
        month_ago = datetime.fromtimestamp(now - 29 * 86_400, timezone.utc).isoformat()
        old_id = c.get("/requests", params={"limit": 1, "until": month_ago}).json()["data"][0]["request_id"]

        def timed(path: str, **params) -> tuple[float, dict]:
            t = time.perf_counter()
            r = c.get(path, params=params)
            ms = (time.perf_counter() - t) * 1000
            r.raise_for_status()
            return ms, r.json()

        def missing() -> float:
            t = time.perf_counter()
            r = c.get(f"/requests/{uuid.uuid4().hex}")
            assert r.status_code == 404, r.text
            return (time.perf_counter() - t) * 1000

        def deep() -> float:
            total, cursor = 0.0, None
            for _ in range(5):
                ms, page = timed("/endpoints/e1/requests", limit=100, **({"cursor": cursor} if cursor else {}))
                total, cursor = total + ms, page["next_cursor"]
            return total / 5

        reads = {
            "endpoint page (100)": lambda: timed(f"/endpoints/e{rng.randrange(5)}/requests", limit=100)[0],
            "endpoint, status=4xx": lambda: timed(f"/endpoints/e{rng.randrange(5)}/requests", limit=100, status="4xx")[0],
            "endpoint, last hour": lambda: timed(f"/endpoints/e{rng.randrange(5)}/requests", limit=100, since=hour_ago)[0],
            "endpoint, key prefix": lambda: timed(f"/endpoints/e{rng.randrange(5)}/requests", limit=100, key=rng.choice(keys))[0],
            "project page (100)": lambda: timed("/requests", limit=100)[0],
            "5 pages deep (per page)": deep,
            "one request by id": lambda: timed(f"/requests/{some_id}")[0],
            "a month-old request by id": lambda: timed(f"/requests/{old_id}")[0],
            "an id not in the log (404)": missing,
            "search (text)": lambda: timed(f"/endpoints/e{rng.randrange(5)}/requests", limit=100, search="rate_limit")[0],
        }
        for name, fn in reads.items():
            for _ in range(5):
                fn()  # warm up
            n = a.requests if name != "search (text)" else max(10, a.requests // 10)
            ms = [fn() for _ in range(n)]
            rows[name] = {"p50_ms": pct(ms, 0.5), "p99_ms": pct(ms, 0.99), "max_ms": max(ms), "n": n}
    finally:
        srv.stop()

    filtered = [k for k in rows if k not in ("ingest", "search (text)")]
    page_p99 = max(rows[k]["p99_ms"] for k in filtered)
    result = {
        "benchmark": "request_log",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "records": a.records,
        "store": "sqlite",
        "results": rows,
        "targets": {"ingest_per_s": 2000, "filtered_page_p99_ms": 50},
        "met": {"ingest_per_s": rows["ingest"]["per_s"] >= 2000, "filtered_page_p99_ms": page_p99 <= 50},
    }
    out = write_result(a.out, result)
    lines = [["read", "n", "p50 ms", "p99 ms", "max ms"]]
    for k, r in rows.items():
        if k != "ingest":
            lines.append([k, str(r["n"]), f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['max_ms']:.1f}"])
    print(table(lines))
    print(
        f"targets: ingest >= 2000/s: {result['met']['ingest_per_s']} ({rows['ingest']['per_s']:.0f}/s); "
        f"filtered page p99 <= 50 ms: {result['met']['filtered_page_p99_ms']} ({page_p99:.1f}; text search not counted)\n"
        f"wrote {out}"
    )
    return 0 if all(result["met"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
