"""Background CPU of an idle embedded Rota: Ray's own processes with Ray's defaults vs
Rota's quiet embedded default (``ROTA_RAY_QUIET``).

Starts ``rota server`` on its embedded head (the gateway deployed, no endpoint), lets it
settle, then reads every process of that cluster (``/proc``: the processes carrying its
``ROTA_RAY_CLUSTER`` marker, and the server itself) twice, ``--seconds`` apart, and
reports the CPU each kind of process used, in % of one core. The two settings alternate
for ``--rounds`` rounds.

    .venv/bin/python bench/ray_idle.py [--rounds 2] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from common import cluster_processes, cpu_s, embedded_rota, table, write_result  # noqa: E402

KINDS = (  # (what the command line says, the name shown)
    ("gcs_server", "GCS"),
    ("raylet", "raylet"),
    ("dashboard/agent.py", "dashboard agent"),
    ("runtime_env/agent", "runtime-env agent"),
    ("dashboard.py", "dashboard"),
    ("log_monitor", "log monitor"),
    ("monitor.py", "autoscaler monitor"),
    ("ServeController", "Serve controller"),
    ("rota-gateway", "gateway replica"),
    ("haproxy", "HAProxy"),
    ("-m rota server", "Rota control plane"),
)


def kind(cmdline: str) -> str:
    return next((name for needle, name in KINDS if needle in cmdline), "other Ray process")


def measure(quiet: bool, seconds: float) -> dict[str, float]:
    with embedded_rota("rota-bench-idle-", ROTA_RAY_QUIET=str(quiet).lower()) as (srv, _):
        time.sleep(20)  # past the start-up work
        marker = json.loads((srv.home / "ray_head.json").read_text())["cluster_id"]
        procs = {pid: kind(cmd) for pid, cmd in cluster_processes(marker).items()}
        procs[srv.proc.pid] = kind("-m rota server")
        before = {}
        for pid in procs:
            try:
                before[pid] = cpu_s(pid)
            except OSError:  # it ended meanwhile
                continue
        time.sleep(seconds)
        used: dict[str, float] = {}
        for pid, name in procs.items():
            if pid not in before:
                continue
            try:
                used[name] = used.get(name, 0.0) + (cpu_s(pid) - before[pid]) / seconds * 100
            except OSError:
                continue
        return used


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "ray_idle.json"))
    a = ap.parse_args()
    runs: list[dict[str, Any]] = []
    for rnd in range(a.rounds):
        for quiet in (False, True) if rnd % 2 == 0 else (True, False):
            used = measure(quiet, a.seconds)
            runs.append({"round": rnd, "quiet": quiet, "cpu_percent": used, "total": sum(used.values())})
            print(f"round {rnd} quiet={quiet}: {sum(used.values()):.1f} % of a core", flush=True)

    def med(quiet: bool, name: str | None = None) -> float:
        vals = [r["total"] if name is None else r["cpu_percent"].get(name, 0.0) for r in runs if r["quiet"] == quiet]
        return statistics.median(vals)

    names = sorted({n for r in runs for n in r["cpu_percent"]}, key=lambda n: -med(False, n))
    result = {
        "benchmark": "ray_idle",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "seconds": a.seconds,
        "runs": runs,
        "median_total_percent": {"ray_defaults": med(False), "quiet": med(True)},
    }
    out = write_result(a.out, result)
    rows = [["process", "Ray defaults % core", "quiet % core"]]
    rows += [[n, f"{med(False, n):.2f}", f"{med(True, n):.2f}"] for n in names]
    rows.append(["total", f"{med(False):.2f}", f"{med(True):.2f}"])
    print(table(rows))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
