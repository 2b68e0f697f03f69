"""An endpoint's monitoring series: the service as its callers saw it (from the request
log: calls, errors, latency, TTFT, inter-token latency, tokens, and the calls in flight at
each step's end, running or still waiting at the gateway), its replicas as Ray Serve ran
them (sampled every ``interval_s``, kept a day), what the replicas report of themselves
(their engine's KV cache and queues; CPU, memory and GPU per replica, kept a day), and its
events on the same timeline."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from pydantic import BaseModel
from sqlalchemy import delete, select

from rota.domain.errors import InvalidInput
from rota.domain.reconcile import Observation
from rota.domain.specs import EndpointState
from rota.services.auth import Principal
from rota.services.endpoints import EndpointService
from rota.services.prometheus import Prometheus, PrometheusError
from rota.services.replica_figures import ReplicaHardware, reported
from rota.store.db import Database
from rota.store.tables import EventRow, ReplicaSampleRow, ReplicaStatsRow, RequestLogRow

log = logging.getLogger(__name__)

MAX_POINTS = 2000
MAX_ROWS = 100_000  # request records read for one series (the first of a busier window)
LONGEST_S = 600.0  # calls that started this long before the window may still be in flight in it


@dataclass(frozen=True)
class Counts:
    running: int
    target: int | None
    min: int | None
    max: int | None
    holding: int = 0  # replicas that hold their resources: running, starting (placed, loading) or stopping


def counts(states: Sequence[EndpointState], observation: Observation) -> dict[int, Counts]:
    """Each endpoint's replicas as Ray Serve reports them, and the bounds in force."""
    out = {}
    for st in states:
        app = observation.apps.get(st.app_name)
        bounds = (st.bounds.min, st.bounds.max) if st.bounds else (None, None)
        running = len(app.running_replica_ids) if app else 0
        holding = running + (app.starting + app.stopping if app else 0)
        out[st.id] = Counts(running, app.target_replicas if app else None, bounds[0], bounds[1], holding)
    return out


@dataclass
class ReplicaSampler:
    db: Database
    interval_s: float = 10.0
    keep_s: float = 86_400.0
    clock: Callable[[], float] = time.time
    _next: float = 0.0
    _next_prune: float = 0.0

    def observe(self, seen: dict[int, Counts]) -> None:
        now = self.clock()
        if now < self._next or not seen:
            return
        self._next = now + self.interval_s
        with self.db.session() as s:
            s.add_all(
                ReplicaSampleRow(endpoint_id=ep, at=now, running=c.running, target=c.target, min=c.min, max=c.max)
                for ep, c in seen.items()
            )
            if now >= self._next_prune:
                s.execute(delete(ReplicaSampleRow).where(ReplicaSampleRow.at < now - self.keep_s))
                s.execute(delete(ReplicaStatsRow).where(ReplicaStatsRow.at < now - self.keep_s))
                self._next_prune = now + 600


class Percentiles(BaseModel):
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


class Point(BaseModel):
    time: datetime
    requests: int = 0
    requests_per_s: float = 0.0
    ok: int = 0  # status < 400
    client_errors: int = 0  # 4xx
    server_errors: int = 0  # 5xx
    error_rate: float | None = None  # (4xx + 5xx) / requests
    latency_ms: Percentiles = Percentiles()
    ttft_ms: Percentiles = Percentiles()
    itl_ms: Percentiles = Percentiles()  # streams: (latency - TTFT) / (output tokens - 1)
    requests_running: int = 0  # in flight at the step's end, past their wait at the gateway
    requests_waiting: int = 0  # in flight at the step's end, queued at the gateway or waiting for a wake
    input_tokens_per_s: float = 0.0
    output_tokens_per_s: float = 0.0
    replicas_running: int | None = None  # the last sample in the step
    replicas_target: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    # The engines' own, from each replica's last report in the step (None: none reported)
    kv_cache_usage: float | None = None  # the fullest replica's KV cache, 0..1
    engine_running: float | None = None  # requests the engines run, summed over replicas
    engine_waiting: float | None = None  # requests waiting in the engines' own queues


class TimelineEvent(BaseModel):
    time: datetime
    kind: str
    message: str


class Series(BaseModel):
    endpoint: str
    since: datetime
    until: datetime
    step_s: float
    points: list[Point]
    events: list[TimelineEvent]
    hardware: list[ReplicaHardware] = []  # per replica, the steps it reported in
    truncated: bool = False  # more than MAX_ROWS calls (the first are counted) or replica reports (the newest)
    source: str = "store"  # "prometheus": read from ROTA_PROMETHEUS_URL (calls in flight and ITL from the request log)
    source_error: str | None = None  # Prometheus did not answer: the store's figures instead


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))], 3)  # nearest rank


def default_step(window_s: float) -> float:
    """About 240 points, on a round step."""
    for step in (10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400):
        if window_s / step <= 240:
            return float(step)
    return 86400.0


@dataclass
class MonitoringService:
    db: Database
    endpoints: EndpointService
    prometheus: Prometheus | None = None

    def series(self, who: Principal, ref: str, since: datetime, until: datetime, step_s: float | None) -> Series:
        if until <= since:
            raise InvalidInput("until must be after since", field="until")
        lo, hi = since.timestamp(), until.timestamp()
        step = step_s or default_step(hi - lo)
        n = math.ceil((hi - lo) / step)
        if n > MAX_POINTS:
            raise InvalidInput(f"{n} points: at most {MAX_POINTS} (a larger step, or a shorter window)", field="step")
        ep = self.endpoints.get(who, ref)
        with self.db.session() as s:
            calls = s.execute(
                select(
                    RequestLogRow.started_at,
                    RequestLogRow.status,
                    RequestLogRow.duration_ms,
                    RequestLogRow.ttft_ms,
                    RequestLogRow.input_tokens,
                    RequestLogRow.output_tokens,
                    RequestLogRow.queue_ms,
                    RequestLogRow.wake_ms,
                )
                .where(
                    RequestLogRow.endpoint_id == ep.id, RequestLogRow.started_at >= lo - LONGEST_S, RequestLogRow.started_at < hi
                )
                .order_by(RequestLogRow.started_at)
                .limit(MAX_ROWS + 1)
            ).all()
            samples = s.execute(
                select(ReplicaSampleRow).where(
                    ReplicaSampleRow.endpoint_id == ep.id, ReplicaSampleRow.at >= lo, ReplicaSampleRow.at < hi
                )
            ).scalars()
            sampled = [(x.at, x.running, x.target, x.min, x.max) for x in samples]
            reports = s.scalars(  # the newest, if more than a series holds
                select(ReplicaStatsRow)
                .where(ReplicaStatsRow.endpoint_id == ep.id, ReplicaStatsRow.at >= lo, ReplicaStatsRow.at < hi)
                .order_by(ReplicaStatsRow.at.desc())
                .limit(MAX_ROWS + 1)
            ).all()[::-1]
            events = s.scalars(
                select(EventRow)
                .where(EventRow.endpoint_id == ep.id, EventRow.at >= since, EventRow.at < until)
                .order_by(EventRow.id)
                .limit(1000)
            ).all()
            timeline = [TimelineEvent(time=e.at, kind=e.kind, message=e.message) for e in events]
        buckets: list[dict[str, list[float]]] = [
            {"status": [], "ms": [], "ttft": [], "itl": [], "in": [], "out": []} for _ in range(n)
        ]
        running_at, waiting_at = [0] * n, [0] * n
        for at, status, ms, ttft, tokens_in, tokens_out, queue_ms, wake_ms in calls[:MAX_ROWS]:
            waited = at + ((queue_ms or 0.0) + (wake_ms or 0.0)) / 1000
            _in_flight(waiting_at, at, waited, lo, step)
            _in_flight(running_at, waited, at + ms / 1000, lo, step)
            if at < lo:  # counted only as in flight
                continue
            b = buckets[min(n - 1, int((at - lo) // step))]
            b["status"].append(status)
            b["ms"].append(ms)
            if ttft is not None:
                b["ttft"].append(ttft)
                if tokens_out and tokens_out > 1:
                    b["itl"].append((ms - ttft) / (tokens_out - 1))
            b["in"].append(tokens_in or 0)
            b["out"].append(tokens_out or 0)
        points = []
        for i, b in enumerate(buckets):
            width = min(step, hi - (lo + i * step))  # the last step may be shorter
            total = len(b["status"])
            client = sum(1 for x in b["status"] if 400 <= x < 500)
            server = sum(1 for x in b["status"] if x >= 500)
            points.append(
                Point(
                    time=datetime.fromtimestamp(lo + i * step, timezone.utc),
                    requests=total,
                    requests_per_s=round(total / width, 6),
                    ok=total - client - server,
                    client_errors=client,
                    server_errors=server,
                    error_rate=round((client + server) / total, 6) if total else None,
                    latency_ms=Percentiles(p50=_pct(b["ms"], 0.5), p95=_pct(b["ms"], 0.95), p99=_pct(b["ms"], 0.99)),
                    ttft_ms=Percentiles(p50=_pct(b["ttft"], 0.5), p95=_pct(b["ttft"], 0.95)),
                    itl_ms=Percentiles(p50=_pct(b["itl"], 0.5), p95=_pct(b["itl"], 0.95)),
                    requests_running=running_at[i],
                    requests_waiting=waiting_at[i],
                    input_tokens_per_s=round(sum(b["in"]) / width, 6),
                    output_tokens_per_s=round(sum(b["out"]) / width, 6),
                )
            )
        for at, running, target, lo_b, hi_b in sorted(sampled):
            p = points[min(n - 1, int((at - lo) // step))]
            p.replicas_running, p.replicas_target, p.min_replicas, p.max_replicas = running, target, lo_b, hi_b
        hardware = reported(points, reports[-MAX_ROWS:], lo, step)
        source, source_error = "store", None
        if self.prometheus:
            try:
                hardware = self.prometheus.fill(points, ep.id, step)
                source = "prometheus"
            except PrometheusError as e:
                source_error = f"Prometheus did not answer ({e}): the figures are the control plane's own"
                log.warning("monitoring: %s", source_error)
        return Series(
            endpoint=ep.name,
            since=since,
            until=until,
            step_s=step,
            points=points,
            events=timeline,
            hardware=hardware,
            truncated=len(calls) > MAX_ROWS or len(reports) > MAX_ROWS,
            source=source,
            source_error=source_error,
        )


def _in_flight(counts: list[int], start: float, end: float, lo: float, step: float) -> None:
    """Count a call in each step whose end instant ``lo + (i + 1) * step`` falls within
    [start, end)."""
    first = max(0, math.ceil((start - lo) / step) - 1)
    for i in range(first, len(counts)):
        t = lo + (i + 1) * step
        if t >= end:
            break
        if t >= start:
            counts[i] += 1
