"""The base URL's ceiling, with 1 and with 2 gateway replicas, against an endpoint's own prefix.

An engine-less streaming endpoint (tests/apps/openai_echo.py: one chunk per word of the
prompt, as fast as it can, 2 replicas) is driven by ``--clients`` concurrent streamed
chats of ``--words`` chunks each, for ``--seconds``, through its own prefix
(``/ep/<key>``: HAProxy -> the replica) and through the base URL (``/v1``: HAProxy -> a
gateway replica -> HAProxy -> the replica), alternated for ``--rounds`` rounds. Then the
same with ``ROTA_GATEWAY_MIN_REPLICAS=MAX=2``. Reports chunks/s per round and the medians;
the target is 2 gateway replicas >= 1.7x the chunks/s of 1.

``--profile``: a flame graph of the gateway replica under the base-URL load (py-spy,
written next to the JSON).

    .venv/bin/python bench/gateway_scaleout.py [--rounds 3] [--clients 32] [--words 200] [--seconds 10] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from common import cluster_processes, cpu_s, embedded_rota, table, write_result  # noqa: E402
from support.procs import wait_until  # noqa: E402

TARGET = 1.7


async def drive(url: str, key: str, clients: int, words: int, seconds: float) -> dict[str, Any]:
    """``clients`` closed-loop streams for ``seconds``: server-sent events received per second."""
    body = {"model": "echo", "stream": True, "messages": [{"role": "user", "content": " ".join(["w"] * words)}]}
    events, requests, failed = 0, 0, 0
    end = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": f"Bearer {key}"}) as session:

        async def client() -> None:
            nonlocal events, requests, failed
            while time.monotonic() < end:
                async with session.post(url, json=body) as r:
                    if r.status != 200:
                        failed += 1
                        await r.read()
                        continue
                    last = b""
                    async for chunk in r.content.iter_any():
                        events += (last + chunk).count(b"\n\n")  # an event's end split across two reads counts too
                        last = chunk[-1:]
                requests += 1

        t0 = time.monotonic()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.monotonic() - t0
    return {"chunks_per_s": events / wall, "requests": requests, "failed": failed, "wall_s": wall}


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of every core so far (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def gateway_pids(srv: Any) -> list[int]:
    """The gateway replicas of this server's own embedded cluster (not of another Rota on the machine)."""
    marker = json.loads((srv.home / "ray_head.json").read_text())["cluster_id"]
    return [pid for pid, cmd in cluster_processes(marker).items() if "ServeReplica:rota-gateway" in cmd]


def profile(pid: int, svg: Path, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy (from PyPI, next to this Python) records the process as a flame graph."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    cmd = [spy, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "250", "-o", str(svg)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def top_frames(svg: Path, n: int = 25) -> list[dict[str, Any]]:
    """The frames that take the most of the samples (inclusive), read back from the SVG."""
    share: dict[str, float] = {}
    for name, pct in re.findall(r"<title>(.*?) \((?:[\d,]+) samples, ([\d.]+)%\)</title>", svg.read_text()):
        share[name] = max(share.get(name, 0.0), float(pct))
    return [{"frame": k, "percent": v} for k, v in sorted(share.items(), key=lambda x: -x[1])[:n]]


def measure(gateways: int, a: argparse.Namespace, out_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The rounds with ``gateways`` gateway replicas, and the profile of one of them."""
    runs: list[dict[str, Any]] = []
    profiled = None
    replicas = {"ROTA_GATEWAY_MIN_REPLICAS": str(gateways), "ROTA_GATEWAY_MAX_REPLICAS": str(gateways)}
    with embedded_rota("rota-bench-scaleout-", test_apps=True, **replicas) as (srv, base):
        body = {
            "name": "echo",
            "template": "echo-chat",
            "routing_key": "echo",
            "scaling": {"replicas": 2},
            "engine": {"max_batch_size": 4 * a.clients},
        }
        srv.api.post("/endpoints", json=body).raise_for_status()
        wait_until(lambda: srv.api.get("/endpoints/echo").json()["status"] == "RUNNING", 300, 0.5, "endpoint")
        wait_until(lambda: len(gateway_pids(srv)) == gateways, 120, 0.5, f"{gateways} gateway replicas")
        routing = httpx.get(f"{srv.url}/internal/v1/routing", headers={"Authorization": f"Bearer {srv.gateway_token}"}).json()
        own = next(e["token"] for e in routing["endpoints"] if e["routing_key"] == "echo")
        prefix = srv.api.get("/endpoints/echo").json()["url"]
        paths = {"prefix": (f"{prefix}/v1/chat/completions", own), "base_url": (f"{base}/v1/chat/completions", srv.admin_key)}
        wait_until(
            lambda: (
                httpx.post(
                    paths["base_url"][0],
                    json={"model": "echo", "messages": []},
                    headers={"Authorization": f"Bearer {srv.admin_key}"},
                ).status_code
                == 200
            ),
            60,
            0.5,
            "routed",
        )
        if a.profile:  # a run of its own (py-spy takes CPU): not among the measured rounds
            svg = out_dir / f"gateway-flame-{gateways}.svg"
            profiler = profile(gateway_pids(srv)[0], svg, a.seconds - 2)
            asyncio.run(drive(*paths["base_url"], a.clients, a.words, a.seconds))
            if profiler.wait(60):
                print(f"py-spy failed: {profiler.stderr.read().decode()[-500:]}", flush=True)  # type: ignore[union-attr]
            else:
                profiled = {"gateways": gateways, "svg": str(svg), "top": top_frames(svg)}
        for rnd in range(a.rounds):
            for path in ("prefix", "base_url") if rnd % 2 == 0 else ("base_url", "prefix"):
                url, key = paths[path]
                pids = gateway_pids(srv)
                before = machine_busy(), {pid: cpu_s(pid) for pid in pids}
                t0 = time.monotonic()
                run = {
                    "gateways": gateways,
                    "round": rnd,
                    "path": path,
                    **asyncio.run(drive(url, key, a.clients, a.words, a.seconds)),
                }
                took, (busy, total) = time.monotonic() - t0, machine_busy()
                # Where the cores went: the machine's busy share, each gateway replica's share of a core.
                run["machine_busy_percent"] = 100 * (busy - before[0][0]) / max(1, total - before[0][1])
                run["gateway_cpu_percent"] = [round(100 * (cpu_s(p) - before[1][p]) / took, 1) for p in pids]
                runs.append(run)
                print(
                    f"gateways={gateways} round {rnd} {path:<9} {run['chunks_per_s']:9.0f} chunks/s ({run['failed']} failed); "
                    f"machine busy {run['machine_busy_percent']:.0f} %, gateway replicas {run['gateway_cpu_percent']} % of a core",
                    flush=True,
                )
    return runs, profiled


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--words", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--gateways", default="1,2", help="gateway replica counts to measure (the ratio needs 1 and 2)")
    ap.add_argument("--profile", action="store_true", help="a py-spy flame graph of the gateway under load")
    ap.add_argument("--label", default="")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "gateway_scaleout.json"))
    a = ap.parse_args()
    out_dir = Path(a.out).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = [int(g) for g in a.gateways.split(",")]
    measured = [measure(g, a, out_dir) for g in counts]
    runs = [run for rs, _ in measured for run in rs]
    profiles = [p for _, p in measured if p]

    def med(g: int, path: str) -> float:
        return statistics.median(r["chunks_per_s"] for r in runs if r["gateways"] == g and r["path"] == path)

    summary = {f"{g}_gateway{'s' if g > 1 else ''}": {"prefix": med(g, "prefix"), "base_url": med(g, "base_url")} for g in counts}
    scale = med(2, "base_url") / med(1, "base_url") if {1, 2} <= set(counts) else float("nan")
    result = {
        "benchmark": "gateway_scaleout",
        "label": a.label,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "clients": a.clients,
        "words": a.words,
        "seconds": a.seconds,
        "runs": runs,
        "profiles": profiles,
        "median_chunks_per_s": summary,
        "two_over_one": scale,
        "target": TARGET,
        "met": bool(scale >= TARGET),
    }
    out = write_result(a.out, result)
    rows = [["gateway replicas", "path", "chunks/s per round", "median", "of prefix"]]
    for g in counts:
        for path in ("prefix", "base_url"):
            per = [f"{r['chunks_per_s']:.0f}" for r in runs if r["gateways"] == g and r["path"] == path]
            rows.append([str(g), path, " / ".join(per), f"{med(g, path):.0f}", f"{med(g, path) / med(g, 'prefix'):.2f}"])
    print(table(rows))
    print(f"base URL, 2 gateway replicas / 1: x{scale:.2f} (target >= {TARGET}: {scale >= TARGET})")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
