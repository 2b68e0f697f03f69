"""What an endpoint replica tells Rota's control plane about itself, every ``interval_s``:
its engine's own gauges (KV cache in use, requests running and waiting in the engine),
read from vLLM's Prometheus registry in this process, and its hardware (CPU and memory
of the replica's processes, vLLM's engine core included; utilisation and memory of the
GPUs in its CUDA_VISIBLE_DEVICES, when there are). Best effort: a report that fails is
dropped. Sampled off the event loop (a thread), so streams are not held up.

Limits: with tensor parallelism over Ray (tensor_parallel_size > 1) the GPU workers are
actors of their own, not this process's children: their CPU, memory and GPUs are not in
the figures. NVML's memory is the whole device's (replicas sharing a GPU each see all of
it), and resident memory is summed over processes (shared pages count more than once).
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

ENGINE_GAUGES = {  # vLLM's name -> Rota's, and how its engines' values combine
    "vllm:kv_cache_usage_perc": ("kv_cache_usage", max),  # 0..1: the fullest engine's
    "vllm:num_requests_running": ("engine_running", sum),
    "vllm:num_requests_waiting": ("engine_waiting", sum),
}


def engine_gauges() -> dict[str, float]:
    """vLLM's gauges in this process (over its engines), by Rota's names."""
    from prometheus_client import REGISTRY

    out: dict[str, float] = {}
    for metric in REGISTRY.collect():
        if metric.name in ENGINE_GAUGES:
            name, combine = ENGINE_GAUGES[metric.name]
            values = [s.value for s in metric.samples if s.name == metric.name]
            if values:
                out[name] = combine(values)
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


_nvml: list[Any] = []  # pynvml, once initialised


def gpus() -> dict[str, float | None]:
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if not visible:
        return {"gpu_percent": None, "gpu_memory_bytes": None}
    try:
        if not _nvml:
            import pynvml

            pynvml.nvmlInit()
            _nvml.append(pynvml)
        pynvml = _nvml[0]
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

    def report() -> None:
        _post(url, token, {"replica": replica, **hardware.sample(), **engine_gauges()})

    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(report)
            failing = False
        except Exception as e:  # e.g. the control plane restarting: the next report will do
            if not failing:
                log.info("could not report this replica's figures: %s: %s", type(e).__name__, e)
            failing = True
