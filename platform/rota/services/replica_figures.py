"""What endpoint replicas report of themselves (``serve_apps/_replica_stats.py``), laid on
an endpoint's monitoring series: each replica's last report in each step gives the
engines' gauges of the step and that replica's hardware."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel

from rota.store.tables import ReplicaStatsRow

if TYPE_CHECKING:
    from rota.services.monitoring import Point


class HardwarePoint(BaseModel):
    time: datetime  # the step's start; the replica's last report in it
    cpu_percent: float | None = None  # of one core, summed over the replica's processes
    memory_bytes: float | None = None  # resident
    gpu_percent: float | None = None
    gpu_memory_bytes: float | None = None


class ReplicaHardware(BaseModel):
    replica: str
    points: list[HardwarePoint]


def reported(points: Sequence[Point], reports: Sequence[ReplicaStatsRow], lo: float, step: float) -> list[ReplicaHardware]:
    """Each replica's last report in each step: the engines' gauges into ``points``, and
    the hardware per replica."""
    last: list[dict[str, ReplicaStatsRow]] = [{} for _ in points]
    for r in reports:  # in time order: a later report in a step replaces the earlier
        last[min(len(points) - 1, int((r.at - lo) // step))][r.replica] = r
    per: dict[str, list[HardwarePoint]] = {}
    for p, seen in zip(points, last, strict=True):
        kv = [r.kv_cache_usage for r in seen.values() if r.kv_cache_usage is not None]
        running = [r.engine_running for r in seen.values() if r.engine_running is not None]
        waiting = [r.engine_waiting for r in seen.values() if r.engine_waiting is not None]
        p.kv_cache_usage = max(kv) if kv else None
        p.engine_running = sum(running) if running else None
        p.engine_waiting = sum(waiting) if waiting else None
        for replica, r in seen.items():
            per.setdefault(replica, []).append(
                HardwarePoint(
                    time=p.time,
                    cpu_percent=r.cpu_percent,
                    memory_bytes=r.memory_bytes,
                    gpu_percent=r.gpu_percent,
                    gpu_memory_bytes=r.gpu_memory_bytes,
                )
            )
    return [ReplicaHardware(replica=k, points=v) for k, v in sorted(per.items())]
