"""What every benchmark shares: percentiles, the printed table, the JSON it writes."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def pct(values: list[float], q: float) -> float:
    """The q-quantile, linearly interpolated (NaN for no values)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def table(rows: list[list[str]]) -> str:
    """Rows as aligned columns: the first left-aligned, numbers right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=False))) for r in rows
    )


def cpu_s(pid: int) -> float:
    """CPU seconds a process has used so far (user + system, from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_ticks() -> dict[int, tuple[int, str]]:
    """Every process's CPU so far, in clock ticks, with its name: pid -> (ticks, name)."""
    out = {}
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[pid] = (int(fields[11]) + int(fields[12]), (cmd or stat[stat.find("(") + 1 : stat.rfind(")")])[:80])
    return out


def cpu_shares(before: dict[int, tuple[int, str]], after: dict[int, tuple[int, str]], seconds: float) -> dict[str, float]:
    """Per process name, its share of one core between two ``process_ticks`` (%), largest first."""
    shares: dict[str, float] = {}
    for pid, (ticks, name) in after.items():
        used = ticks - before.get(pid, (0, name))[0]
        if used > 0:
            shares[name] = shares.get(name, 0.0) + used / os.sysconf("SC_CLK_TCK") / seconds * 100
    return {k: round(v, 1) for k, v in sorted(shares.items(), key=lambda kv: -kv[1])}


def cluster_processes(marker: str) -> dict[int, str]:
    """The processes of one embedded Ray cluster (each carries ``ROTA_RAY_CLUSTER=<marker>``
    in its environment): pid -> command line. Processes that end meanwhile are left out."""
    found = {}
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"ROTA_RAY_CLUSTER={marker}".encode() in environ.split(b"\0"):
            found[pid] = cmd
    return found


def write_result(path: str | Path, result: dict[str, Any]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    return out


@contextlib.contextmanager
def embedded_rota(prefix: str, test_apps: bool = False, **extra: str) -> Iterator[tuple[Any, str]]:
    """``rota server`` on its own embedded Ray head, up with its gateway: (the server, the
    Serve base URL); stopped, with its head, afterwards."""
    import httpx

    from support.procs import RotaServer, embedded_env, wait_until

    home = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    env = embedded_env(home, test_apps, **{"ROTA_LOG_LEVEL": "WARNING", **extra})
    base = f"http://127.0.0.1:{env['ROTA_SERVE_PORT']}"
    srv = RotaServer(home, env)
    try:
        srv.start()
        wait_until(lambda: srv.health()["ray"]["reachable"], 300, 1, "embedded Ray")
        wait_until(lambda: "/" in httpx.get(f"{base}/-/routes", timeout=2).json(), 120, 0.5, "the gateway")
        yield srv, base
    finally:
        srv.stop(120)
