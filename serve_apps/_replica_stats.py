"""What an endpoint replica tells Rota's control plane about itself, every ``interval_s``:
its engine's own gauges (KV cache in use, requests running and waiting in the engine),
read from vLLM's Prometheus registry in this process, and its hardware (CPU and memory
of the replica's processes, vLLM's engine core included; utilisation and memory of the
GPUs Ray gave it, when there are). Best effort: a report that fails is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import urllib.request
from typing import Any

log = logging.getLogger("ray.serve")

ENGINE_GAUGES = {
    "vllm:kv_cache_usage_perc": "kv_cache_usage",  # 0..1
    "vllm:num_requests_running": "engine_running",
    "vllm:num_requests_waiting": "engine_waiting",
}


def engine_gauges() -> dict[str, float]:
    """vLLM's gauges in this process (summed over its engines), by Rota's names."""
    from prometheus_client import REGISTRY

    out: dict[str, float] = {}
    for metric in REGISTRY.collect():
        name = ENGINE_GAUGES.get(metric.name)
        if name:
            out[name] = sum(s.value for s in metric.samples if s.name == metric.name)
    return out


class Hardware:
    """CPU (percent of one core, summed) and resident memory of this process and its
    children; the GPUs in CUDA_VISIBLE_DEVICES through NVML, if it is there."""

    def __init__(self) -> None:
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.known: dict[int, Any] = {}  # cpu_percent measures since the last call on the same object

    def sample(self) -> dict[str, float | None]:
        procs = [self.me]
        with contextlib.suppress(self.psutil.Error):
            procs += self.me.children(recursive=True)
        cpu = memory = 0.0
        alive = {}
        for p in procs:
            p = self.known.get(p.pid, p)
            try:
                cpu += p.cpu_percent(None)
                memory += p.memory_info().rss
                alive[p.pid] = p
            except self.psutil.Error:
                continue
        self.known = alive
        return {"cpu_percent": round(cpu, 1), "memory_bytes": memory, **gpus()}


def gpus() -> dict[str, float | None]:
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if not visible:
        return {"gpu_percent": None, "gpu_memory_bytes": None}
    try:
        import pynvml

        pynvml.nvmlInit()
        handles = [
            pynvml.nvmlDeviceGetHandleByUUID(d) if d.startswith(("GPU-", "MIG-")) else pynvml.nvmlDeviceGetHandleByIndex(int(d))
            for d in visible
        ]
        util = [pynvml.nvmlDeviceGetUtilizationRates(h).gpu for h in handles]
        used = [pynvml.nvmlDeviceGetMemoryInfo(h).used for h in handles]
        return {"gpu_percent": sum(util) / len(util), "gpu_memory_bytes": float(sum(used))}
    except Exception as e:  # no NVML here (the CPU build), or a device it cannot read
        log.debug("no GPU figures: %s", e)
        return {"gpu_percent": None, "gpu_memory_bytes": None}


def stats_url(report_url: str) -> str:
    """Next to the phase report: ``.../internal/v1/phase`` -> ``.../internal/v1/replica-stats``."""
    return report_url.rsplit("/", 1)[0] + "/replica-stats"


def _post(url: str, token: str | None, body: dict[str, Any]) -> None:
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    urllib.request.urlopen(req, timeout=5).close()


async def report_forever(report_url: str, token: str | None, replica: str, interval_s: float = 10.0) -> None:
    hardware = Hardware()
    hardware.sample()  # the first CPU figure of a process is 0: start counting now
    url, failing = stats_url(report_url), False
    while True:
        await asyncio.sleep(interval_s)
        body = {"replica": replica, **hardware.sample(), **engine_gauges()}
        try:
            await asyncio.to_thread(_post, url, token, body)
            failing = False
        except OSError as e:  # the control plane may be restarting: the next report will do
            if not failing:
                log.info("could not report this replica's figures: %s", e)
            failing = True
