"""Trigger accuracy: hundreds of active tasks, a thousand fires in a few minutes.

Starts `rota server` (SQLite, its own ports and home) without a Ray cluster: a fire never
calls Ray (it records a run and writes desired bounds), so this measures the scheduler
alone, and 200 applications deploying at once would only measure this VM's two cores.
Creates daily tasks (several entries each, at distinct seconds) and one-off tasks in
five timezones, all falling inside one window, activates them, waits for the window to
pass, and reads every `fired`/`caught_up` event back through the API.

Reports fire lateness (fired - scheduled) p50/p99/max, missed fires (expected, never
applied) and duplicate fires (applied twice), against the targets: p99 <= 50 ms,
max <= 250 ms, 0 missed, 0 duplicates.

    .venv/bin/python bench/triggers.py [--daily 170] [--entries 6] [--one-off 50] [--window 180]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytz

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from common import pct, table, write_result  # noqa: E402
from support.procs import TEST_APPS, RotaServer, free_port  # noqa: E402

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Sydney"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--daily", type=int, default=170, help="daily tasks")
    ap.add_argument("--entries", type=int, default=6, help="entries per daily task")
    ap.add_argument("--one-off", type=int, default=50, help="one-off tasks")
    ap.add_argument("--window", type=int, default=180, help="seconds over which the fires are spread")
    ap.add_argument("--lead", type=int, default=45, help="seconds from now to the window (creating tasks takes time)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "triggers.json"))
    a = ap.parse_args()
    rng = random.Random(a.seed)

    home = Path(tempfile.mkdtemp(prefix="rota-bench-triggers-", dir="/tmp"))
    srv = RotaServer(
        home,
        {
            "ROTA_RAY_ADDRESS": f"http://127.0.0.1:{free_port()}",  # nothing listens: no Ray on purpose
            "ROTA_SERVE_APPS_PATH": str(TEST_APPS),
            "ROTA_LOG_LEVEL": "WARNING",
            "ROTA_RECONCILE_INTERVAL_S": "2",
            "ROTA_SWEEP_INTERVAL_S": "15",
        },
    )
    try:
        srv.start()
        t0 = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=a.lead)
        expected: dict[tuple[str, str], datetime] = {}  # (task, scheduled UTC iso) -> instant
        bodies = []
        for i in range(a.daily):
            tz = pytz.timezone(ZONES[i % len(ZONES)])
            offsets = rng.sample(range(a.window), a.entries)
            schedule = []
            for k, off in enumerate(sorted(offsets)):
                at = t0 + timedelta(seconds=off)
                schedule.append({"time": at.astimezone(tz).strftime("%H:%M:%S"), "min_replicas": k % 3, "max_replicas": 3})
                expected[(f"d{i}", at.isoformat())] = at
            bodies.append({"name": f"d{i}", "type": "daily", "timezone": tz.zone, "schedule": schedule})
        for i in range(a.one_off):
            tz = pytz.timezone(ZONES[i % len(ZONES)])
            at = t0 + timedelta(seconds=rng.randrange(a.window))
            bodies.append(
                {
                    "name": f"o{i}",
                    "type": "one_off",
                    "timezone": tz.zone,
                    "schedule": [{"time": at.astimezone(tz).strftime("%Y-%m-%dT%H:%M:%S"), "min_replicas": 1, "max_replicas": 1}],
                }
            )
            expected[(f"o{i}", at.isoformat())] = at
        c0 = time.perf_counter()
        for b in bodies:
            r = srv.api.post("/tasks", json={**b, "file_path": "echo", "deployment_name": "app"})
            r.raise_for_status()
            srv.api.post(f"/tasks/{b['name']}/activate").raise_for_status()
        setup_s = time.perf_counter() - c0
        if datetime.now(timezone.utc) >= t0:
            print(f"setup took {setup_s:.0f}s, past the window start: raise --lead", file=sys.stderr)
            return 2
        print(
            f"{len(bodies)} tasks active ({setup_s:.1f}s to create); {len(expected)} fires due from {t0.isoformat()} over {a.window}s",
            flush=True,
        )
        time.sleep(max(0.0, (t0 + timedelta(seconds=a.window + 10) - datetime.now(timezone.utc)).total_seconds()))

        events, after = [], 0
        while True:
            page = srv.api.get("/events", params={"after_id": after, "limit": 10000}).json()
            if not page:
                break
            events += page
            after = page[-1]["id"]
    finally:
        srv.stop()

    applied = [e for e in events if e["kind"] in ("fired", "caught_up")]
    seen = Counter((e["task_name"], datetime.fromisoformat(e["data"]["scheduled_at"]).isoformat()) for e in applied)
    lateness = [e["data"]["lateness_ms"] for e in applied]
    missed = sorted(k for k in expected if k not in seen)
    duplicates = sorted(k for k, n in seen.items() if n > 1)
    result = {
        "benchmark": "triggers",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "tasks": len(bodies),
        "fires_expected": len(expected),
        "fires_applied": len(applied),
        "caught_up": sum(1 for e in applied if e["kind"] == "caught_up"),
        "lateness_ms": {"p50": pct(lateness, 0.5), "p99": pct(lateness, 0.99), "max": max(lateness, default=float("nan"))},
        "missed": len(missed),
        "duplicates": len(duplicates),
        "missed_examples": missed[:10],
        "targets": {"p99_ms": 50, "max_ms": 250, "missed": 0, "duplicates": 0},
    }
    L = result["lateness_ms"]
    result["met"] = {"p99_ms": L["p99"] <= 50, "max_ms": L["max"] <= 250, "missed": not missed, "duplicates": not duplicates}
    out = write_result(a.out, result)
    print(
        table(
            [
                ["tasks", "fires due", "applied", "lateness p50 ms", "p99 ms", "max ms", "missed", "duplicates"],
                [
                    str(len(bodies)),
                    str(len(expected)),
                    str(len(applied)),
                    f"{L['p50']:.1f}",
                    f"{L['p99']:.1f}",
                    f"{L['max']:.1f}",
                    str(len(missed)),
                    str(len(duplicates)),
                ],
                ["target", "", "", "", "<= 50", "<= 250", "0", "0"],
            ]
        )
    )
    print(f"met: {result['met']}\nwrote {out}")
    return 0 if all(result["met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
