"""Async invocations: submit throughput, drain throughput against the same requests sent
synchronously, and queue-to-first-dispatch latency on an awake endpoint.

Starts `rota server` on the embedded default with the engine-less echo endpoint
(tests/apps/openai_echo.py; each request holds its slot `--hold` seconds, like a short
generation), 1 replica taking `--batch` at once. Through the OpenAI base URL:

1. submit: `--submits` async requests, `--clients` at once, to a stopped endpoint (so
   nothing drains meanwhile): submits answered 202 per second, at the base URL (through
   the gateway) and at the control plane's own port, interleaved in `--rounds` rounds;
   the queue grows by each round's submits. Target >= 500/s at the base URL (median).
2. drain vs synchronous, interleaved in `--rounds` rounds, the order alternating: the same
   `--requests` requests sent synchronously by as many closed-loop clients as the
   dispatcher's async limit for the endpoint, then queued at once and drained by the
   dispatcher (from the first submit to the last answer recorded). The ratio is taken
   within a round; the target is checked on the median. Target >= 0.9x.
3. first dispatch: `--probes` single requests, one at a time, to the awake endpoint: from
   the submit's `created_at` to its `started_at` (both the control plane's clock). Target
   p99 <= 100 ms.
4. a large batch: a `--batch-lines` line file (the most a batch takes: 50,000) created
   on the stopped endpoint, while one client submits single requests one after another:
   how long the create takes, and each submit's latency during it against the same
   client's with no batch going in (the store's write lock is what a batch holds).

    .venv/bin/python bench/async_queue.py [--rounds 3] [--requests 300] [--hold 0.2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from common import embedded_rota, pct, table, write_result  # noqa: E402
from support.procs import wait_until  # noqa: E402


def fan_out(n: int, clients: int, one) -> float:
    """``one(i)`` for i in range(n), ``clients`` at a time; the seconds it took."""
    it = iter(range(n))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next(it, None)
            if i is None:
                return
            one(i)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def held(i: int) -> dict:
    return {"model": "held", "messages": [{"role": "user", "content": str(i)}]}


def part_submit(a, http: httpx.Client, srv) -> tuple[dict, list[list[str]]]:
    """Submits answered 202 per second, at the base URL and at the control plane's port,
    interleaved over ``--rounds`` rounds (the order alternating); the median decides."""
    direct = httpx.Client(base_url=srv.url, headers=http.headers, timeout=60, limits=httpx.Limits(max_connections=64))
    rounds: list[dict[str, float]] = []
    statuses: set[int] = set()
    for r in range(a.rounds):
        got = {}
        for where in ("base_url", "control_plane") if r % 2 == 0 else ("control_plane", "base_url"):
            client = http if where == "base_url" else direct
            codes: list[int] = []
            s = fan_out(
                a.submits,
                a.clients,
                lambda i, c=client, out=codes: out.append(c.post("/v1/async/chat/completions", json=held(i)).status_code),
            )
            statuses |= set(codes)
            got[where] = codes.count(202) / s
        rounds.append(got)
        print(f"round {r + 1}: submits/s base URL {got['base_url']:.0f}, control plane {got['control_plane']:.0f}")
    direct.close()
    median = {w: statistics.median(x[w] for x in rounds) for w in ("base_url", "control_plane")}
    met = median["base_url"] >= 500
    per_round = " / ".join(f"{x['base_url']:.0f}" for x in rounds)
    rows = [
        ["submits/s (base URL), median", f"{median['base_url']:.0f}", ">= 500", str(met)],
        ["  per round", per_round, "", ""],
        ["submits/s (control plane), median", f"{median['control_plane']:.0f}", "", ""],
    ]
    out = {"n": a.submits, "clients": a.clients, "rounds": rounds, "median": median, "statuses": sorted(statuses)}
    return {"submit": out, "met_submits_per_s": met}, rows


def part_drain(a, http: httpx.Client, srv) -> tuple[dict, list[list[str]]]:
    """Drain vs the same requests sent synchronously, interleaved."""
    async_limit = max(1, min(a.batch - 1, int(a.batch * 0.75)))  # the replica's batch x (1 - ROTA_ASYNC_RESERVE)
    body = {"model": "work", "messages": [{"role": "user", "content": "x"}], "delay_s": a.hold}
    rounds = []
    for r in range(a.rounds):
        got: dict[str, float] = {}
        for mode in ("sync", "async") if r % 2 == 0 else ("async", "sync"):
            if mode == "sync":
                codes: list[int] = []
                s = fan_out(
                    a.requests,
                    async_limit,
                    lambda i, out=codes: out.append(http.post("/v1/chat/completions", json=body).status_code),
                )
                assert codes.count(200) == a.requests, codes
            else:
                ids: list[str] = []
                t0 = time.perf_counter()
                fan_out(
                    a.requests,
                    a.clients,
                    lambda i, out=ids: out.append(http.post("/v1/async/chat/completions", json=body).json()["id"]),
                )
                wait_until(
                    lambda: (q := srv.api.get("/endpoints/work").json()["async_queue"])["queued"] == q["running"] == 0,
                    600,
                    0.05,
                    "drained",
                )
                s = time.perf_counter() - t0
                done = {http.get(f"/v1/async/{i}").json()["status"] for i in ids[:20]}
                assert done == {"succeeded"}, done
            got[mode] = a.requests / s
        rounds.append({"sync_rps": got["sync"], "async_rps": got["async"], "ratio": got["async"] / got["sync"]})
        print(f"round {r + 1}: sync {got['sync']:.1f} req/s, drain {got['async']:.1f} req/s, ratio {rounds[-1]['ratio']:.2f}")
    ratio = statistics.median(x["ratio"] for x in rounds)
    rows = [["drain / sync (median)", f"{ratio:.2f}x", ">= 0.9x", str(ratio >= 0.9)]]
    return {
        "drain_vs_sync": {"rounds": rounds, "median_ratio": ratio, "async_limit": async_limit},
        "met_drain_over_sync": ratio >= 0.9,
    }, rows


def part_dispatch(a, http: httpx.Client, srv) -> tuple[dict, list[list[str]]]:
    """Queue to first dispatch, one at a time on the awake endpoint."""
    waits = []
    quick = {"model": "work", "messages": [{"role": "user", "content": "x"}]}
    for _ in range(a.probes):
        rid = http.post("/v1/async/chat/completions", json=quick).json()["id"]
        got_one = wait_until(
            lambda rid=rid: (x := http.get(f"/v1/async/{rid}").json())["status"] == "succeeded" and x, 30, 0.02, "answered"
        )
        waits.append((got_one["started_at"] - got_one["created_at"]) * 1000)
    p99 = pct(waits, 0.99)
    rows = [
        ["first dispatch p50 ms", f"{pct(waits, 0.5):.1f}", "", ""],
        ["first dispatch p99 ms", f"{p99:.1f}", "<= 100", str(p99 <= 100)],
    ]
    return {
        "first_dispatch_ms": {"p50": pct(waits, 0.5), "p90": pct(waits, 0.9), "p99": p99, "max": max(waits)},
        "met_first_dispatch_p99_ms": p99 <= 100,
    }, rows


def part_batch(a, http: httpx.Client, srv) -> tuple[dict, list[list[str]]]:
    """A large batch created while one client submits single requests one at a time."""
    lines = "\n".join(
        json.dumps({"custom_id": f"b{i}", "method": "POST", "url": "/v1/chat/completions", "body": held(i)})
        for i in range(a.batch_lines)
    )
    fid = http.post("/v1/files", files={"file": ("big.jsonl", lines.encode())}, data={"purpose": "batch"}, timeout=300).json()[
        "id"
    ]

    def probe(stop: threading.Event, out: list[float]) -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            assert http.post("/v1/async/chat/completions", json=held(0)).status_code == 202
            out.append((time.perf_counter() - t0) * 1000)

    def probing(during) -> list[float]:
        stop, out = threading.Event(), []
        t = threading.Thread(target=probe, args=(stop, out))
        t.start()
        during()
        stop.set()
        t.join()
        return out

    quiet = probing(lambda: time.sleep(10))
    took = {}

    def create() -> None:
        t0 = time.perf_counter()
        r = http.post("/v1/batches", json={"input_file_id": fid, "endpoint": "/v1/chat/completions"}, timeout=600)
        took["s"], took["status"] = time.perf_counter() - t0, r.json()["status"]
        assert r.status_code == 200 and r.json()["request_counts"]["total"] == a.batch_lines, r.text

    busy = probing(create)
    stats = {
        k: {"n": len(v), "p50": pct(v, 0.5), "p99": pct(v, 0.99), "max": max(v)} for k, v in (("alone", quiet), ("during", busy))
    }
    rows = [
        [f"batch of {a.batch_lines} lines: create s", f"{took['s']:.1f}", "", ""],
        ["submit ms alone p50 / p99 / max", "{p50:.1f} / {p99:.1f} / {max:.0f}".format(**stats["alone"]), "", ""],
        ["submit ms during it p50 / p99 / max", "{p50:.1f} / {p99:.1f} / {max:.0f}".format(**stats["during"]), "", ""],
    ]
    return {"batch_load": {"lines": a.batch_lines, "create_s": took["s"], "status": took["status"], "submit_ms": stats}}, rows


PARTS = {"submit": part_submit, "drain": part_drain, "dispatch": part_dispatch, "batch": part_batch}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--submits", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--hold", type=float, default=0.2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--batch-lines", type=int, default=50_000)
    ap.add_argument("--parts", default=",".join(PARTS), help="which parts to run, in order")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "async_queue.json"))
    a = ap.parse_args()
    parts = [p for p in a.parts.split(",") if p]
    if unknown := set(parts) - set(PARTS):
        ap.error(f"unknown parts: {sorted(unknown)}")

    result: dict = {
        "benchmark": "async_queue",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "params": vars(a),
        "targets": {"submits_per_s": 500, "drain_over_sync": 0.9, "first_dispatch_p99_ms": 100},
    }
    rows = [["measure", "Rota", "target", "met"]]
    with embedded_rota("rota-bench-async-", test_apps=True, ROTA_ASYNC_MAX_DEPTH="1000000") as (srv, base):
        for name in ("work", "held"):
            srv.api.post(
                "/endpoints",
                json={
                    "name": name,
                    "template": "echo-chat",
                    "routing_key": name,
                    "scaling": {"replicas": 1},
                    "engine": {"max_batch_size": a.batch},
                },
            ).raise_for_status()
        for name in ("work", "held"):
            wait_until(lambda n=name: srv.api.get(f"/endpoints/{n}").json()["status"] == "RUNNING", 300, 0.5, name)
        srv.api.post("/endpoints/held/stop").raise_for_status()  # what is queued to it stays queued
        wait_until(lambda: srv.api.get("/endpoints/held").json()["status"] == "STOPPED", 120, 0.5, "held stopped")
        auth = {"Authorization": f"Bearer {srv.admin_key}"}
        with httpx.Client(base_url=base, headers=auth, timeout=60, limits=httpx.Limits(max_connections=64)) as http:
            wait_until(lambda: http.post("/v1/chat/completions", json={"model": "work", "messages": []}).status_code == 200, 60)
            for name in parts:
                got, part_rows = PARTS[name](a, http, srv)
                result |= got
                rows += part_rows
    result["met"] = {k.removeprefix("met_"): result.pop(k) for k in [k for k in result if k.startswith("met_")]}
    out = write_result(a.out, result)
    print(table(rows))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
