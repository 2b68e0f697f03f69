"""Overload: an endpoint at 2x its capacity. Excess requests must get 429 (or 503) with
Retry-After quickly, and admitted requests keep p99 <= 1.5x their unloaded p99.

Starts `rota server` on the embedded default with the engine-less echo endpoint
(tests/apps/openai_echo.py; each request holds its slot `--hold` seconds, like a short
generation), 1 replica, max_batch_size N, no queue: capacity N requests at once. Runs N
closed-loop clients (unloaded), then 2N, through the OpenAI base URL.

    .venv/bin/python bench/overload.py [--capacity 4] [--hold 0.2] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import platform
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


def run(url: str, key: str, clients: int, seconds: float, hold: float) -> list[tuple[int, float, bool]]:
    """Closed-loop clients for `seconds`: (status, latency ms, has Retry-After) per request."""
    out: list[tuple[int, float, bool]] = []
    end = time.monotonic() + seconds
    body = {"model": "echo", "messages": [{"role": "user", "content": "x"}], "delay_s": hold}

    def client():
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
            while time.monotonic() < end:
                t = time.perf_counter()
                r = c.post(url, json=body)
                out.append((r.status_code, (time.perf_counter() - t) * 1000, "retry-after" in r.headers))
                if r.status_code != 200:
                    time.sleep(float(r.headers.get("retry-after", 1)) / 10)  # an impatient but polite client

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--capacity", type=int, default=4)
    ap.add_argument("--hold", type=float, default=0.2)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "overload.json"))
    a = ap.parse_args()
    with embedded_rota("rota-bench-overload-", test_apps=True) as (srv, serve_url):
        srv.api.post(
            "/endpoints",
            json={
                "name": "echo",
                "template": "echo-chat",
                "routing_key": "echo",
                "scaling": {"replicas": 1},
                "engine": {"max_batch_size": a.capacity, "max_queued_requests": 0},
            },
        ).raise_for_status()
        wait_until(lambda: srv.api.get("/endpoints/echo").json()["status"] == "RUNNING", 300, 0.5, "endpoint")
        url = f"{serve_url}/v1/chat/completions"
        key = srv.admin_key
        wait_until(
            lambda: (
                httpx.post(url, json={"model": "echo", "messages": []}, headers={"Authorization": f"Bearer {key}"}).status_code
                == 200
            ),
            60,
        )
        unloaded = run(url, key, a.capacity, a.seconds, a.hold)
        loaded = run(url, key, 2 * a.capacity, a.seconds, a.hold)

    def ok(rs):
        return [ms for code, ms, _ in rs if code == 200]

    rejected = [(code, ms, ra) for code, ms, ra in loaded if code in (429, 503)]
    other = [code for code, _, _ in loaded + unloaded if code not in (200, 429, 503)]
    u99, l99 = pct(ok(unloaded), 0.99), pct(ok(loaded), 0.99)
    result = {
        "benchmark": "overload",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "capacity": a.capacity,
        "hold_s": a.hold,
        "unloaded": {"requests": len(unloaded), "ok": len(ok(unloaded)), "p50_ms": pct(ok(unloaded), 0.5), "p99_ms": u99},
        "at_2x": {
            "requests": len(loaded),
            "ok": len(ok(loaded)),
            "p50_ms": pct(ok(loaded), 0.5),
            "p99_ms": l99,
            "rejected": len(rejected),
            "rejected_p99_ms": pct([ms for _, ms, _ in rejected], 0.99),
            "rejected_with_retry_after": sum(1 for *_, ra in rejected if ra),
        },
        "unexpected_statuses": other,
        "admitted_p99_ratio": l99 / u99,
        "targets": {"admitted_p99_ratio": 1.5, "rejections_have_retry_after": True},
    }
    result["met"] = {
        "admitted_p99_ratio": l99 / u99 <= 1.5,
        "rejections_have_retry_after": bool(rejected) and all(ra for *_, ra in rejected),
        "no_errors": not other,
    }
    out = write_result(a.out, result)
    L = result["at_2x"]
    print(
        table(
            [
                ["load", "requests", "200", "p50 ms", "p99 ms", "429/503", "reject p99 ms"],
                [
                    f"{a.capacity} clients (= capacity)",
                    str(len(unloaded)),
                    str(len(ok(unloaded))),
                    f"{result['unloaded']['p50_ms']:.0f}",
                    f"{u99:.0f}",
                    "0",
                    "",
                ],
                [
                    f"{2 * a.capacity} clients (2x)",
                    str(len(loaded)),
                    str(L["ok"]),
                    f"{L['p50_ms']:.0f}",
                    f"{l99:.0f}",
                    str(L["rejected"]),
                    f"{L['rejected_p99_ms']:.1f}",
                ],
            ]
        )
    )
    print(
        f"admitted p99 ratio {l99 / u99:.2f} (target <= 1.5); rejections with Retry-After: "
        f"{L['rejected_with_retry_after']}/{L['rejected']}; met: {result['met']}\nwrote {out}"
    )
    return 0 if all(result["met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
