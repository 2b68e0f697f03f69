"""Async invocations: submit throughput, drain throughput against the same requests sent
synchronously, and queue-to-first-dispatch latency on an awake endpoint.

Starts `rota server` on the embedded default with the engine-less echo endpoint
(tests/apps/openai_echo.py; each request holds its slot `--hold` seconds, like a short
generation), 1 replica taking `--batch` at once. Through the OpenAI base URL:

1. submit: `--submits` async requests, `--clients` at once, to a stopped endpoint (so
   nothing drains meanwhile): submits answered 202 per second, at the base URL (through
   the gateway) and at the control plane's own port. Target >= 500/s at the base URL.
2. drain vs synchronous, interleaved in `--rounds` rounds, the order alternating: the same
   `--requests` requests sent synchronously by as many closed-loop clients as the
   dispatcher's async limit for the endpoint, then queued at once and drained by the
   dispatcher (from the first submit to the last answer recorded). The ratio is taken
   within a round; the target is checked on the median. Target >= 0.9x.
3. first dispatch: `--probes` single requests, one at a time, to the awake endpoint: from
   the submit's `created_at` to its `started_at` (both the control plane's clock). Target
   p99 <= 100 ms.

    .venv/bin/python bench/async_queue.py [--rounds 3] [--requests 300] [--hold 0.2]
"""

from __future__ import annotations

import argparse
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--submits", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--hold", type=float, default=0.2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "async_queue.json"))
    a = ap.parse_args()

    with embedded_rota("rota-bench-async-", test_apps=True) as (srv, base):
        key = srv.admin_key
        auth = {"Authorization": f"Bearer {key}"}
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
        srv.api.post("/endpoints/held/stop").raise_for_status()
        wait_until(lambda: srv.api.get("/endpoints/held").json()["status"] == "STOPPED", 120, 0.5, "held stopped")
        http = httpx.Client(base_url=base, headers=auth, timeout=60, limits=httpx.Limits(max_connections=64))
        wait_until(lambda: http.post("/v1/chat/completions", json={"model": "work", "messages": []}).status_code == 200, 60)

        # 1. submit throughput
        submitted = []

        def submit(i: int) -> None:
            r = http.post("/v1/async/chat/completions", json={"model": "held", "messages": [{"role": "user", "content": str(i)}]})
            submitted.append(r.status_code)

        submit_s = fan_out(a.submits, a.clients, submit)
        submit_rate = submitted.count(202) / submit_s
        direct = httpx.Client(base_url=srv.url, headers=auth, timeout=60, limits=httpx.Limits(max_connections=64))
        direct_codes = []

        def submit_direct(i: int) -> None:
            r = direct.post(
                "/v1/async/chat/completions", json={"model": "held", "messages": [{"role": "user", "content": str(i)}]}
            )
            direct_codes.append(r.status_code)

        direct_s = fan_out(a.submits, a.clients, submit_direct)
        direct_rate = direct_codes.count(202) / direct_s
        direct.close()

        # 2. drain vs synchronous, interleaved
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
                        lambda: (
                            srv.api.get("/endpoints/work").json()["async_queue"]
                            == {"queued": 0, "running": 0, "oldest_queued_s": None}
                        ),
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

        # 3. queue to first dispatch, one at a time on the awake endpoint
        waits = []
        quick = {"model": "work", "messages": [{"role": "user", "content": "x"}]}
        for _ in range(a.probes):
            rid = http.post("/v1/async/chat/completions", json=quick).json()["id"]
            got_one = wait_until(
                lambda rid=rid: (x := http.get(f"/v1/async/{rid}").json())["status"] == "succeeded" and x, 30, 0.02, "answered"
            )
            waits.append((got_one["started_at"] - got_one["created_at"]) * 1000)
        http.close()

    ratio = statistics.median(x["ratio"] for x in rounds)
    p99 = pct(waits, 0.99)
    result = {
        "benchmark": "async_queue",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "params": vars(a) | {"async_limit": async_limit},
        "submit": {
            "n": a.submits,
            "clients": a.clients,
            "seconds": submit_s,
            "per_s": submit_rate,
            "statuses": sorted(set(submitted)),
        },
        "drain_vs_sync": {"rounds": rounds, "median_ratio": ratio},
        "first_dispatch_ms": {"p50": pct(waits, 0.5), "p90": pct(waits, 0.9), "p99": p99, "max": max(waits)},
        "targets": {"submits_per_s": 500, "drain_over_sync": 0.9, "first_dispatch_p99_ms": 100},
    }
    result["met"] = {"submits_per_s": submit_rate >= 500, "drain_over_sync": ratio >= 0.9, "first_dispatch_p99_ms": p99 <= 100}
    out = write_result(a.out, result)
    print(
        table(
            [
                ["measure", "Rota", "target", "met"],
                ["submits/s (base URL)", f"{submit_rate:.0f}", ">= 500", str(result["met"]["submits_per_s"])],
                ["submits/s (control plane)", f"{direct_rate:.0f}", "", ""],
                ["drain / sync (median)", f"{ratio:.2f}x", ">= 0.9x", str(result["met"]["drain_over_sync"])],
                ["first dispatch p50 ms", f"{pct(waits, 0.5):.1f}", "", ""],
                ["first dispatch p99 ms", f"{p99:.1f}", "<= 100", str(result["met"]["first_dispatch_p99_ms"])],
            ]
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
