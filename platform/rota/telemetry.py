"""Prometheus metrics of the control plane and of the base URL, served at ``/metrics``.

The gateway's own series (requests, latency, time to first token, wakes, tokens) are
counted here from the request records it sends every second, so one scrape of the
control plane covers both and the gateway needs no metrics port of its own. Counters
start at zero with the process, as Prometheus expects of a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from rota.domain.endpoints import Desired
from rota.domain.requests import GatewayRecord
from rota.services.task_queries import readiness
from rota.store.db import Database
from rota.store.names import endpoint_names
from rota.store.tables import EndpointRow, ProjectRow, ReplicaStatsRow, RunRow, TaskRow

LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
WAKE = (1, 5, 10, 30, 60, 120, 300, 600, 1200)
# Error codes kept as a label (others are "other": a label's values must stay few).
KNOWN_ERRORS = frozenset(
    {
        "invalid_api_key",
        "model_not_found",
        "unknown_url",
        "invalid_json",
        "missing_model",
        "request_too_large",
        "rate_limit_exceeded",
        "endpoint_unavailable",
        "endpoint_waking",
        "client_closed_request",
        "upstream_error",
        "BadRequestError",
        "NotFoundError",
        "InternalServerError",
    }
)


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.fires = Counter("rota_fires", "Schedule fires applied", ["trigger"], registry=r)
        self.missed = Counter("rota_missed_fires", "One-off fires missed (the control plane was down past the grace)", registry=r)
        self.lateness = Histogram(
            "rota_fire_lateness_seconds", "How late a fire was applied", ["trigger"], registry=r, buckets=LATENCY
        )
        labels = ["project", "endpoint", "endpoint_id"]  # the id: a renamed endpoint keeps its series
        self.requests = Counter("rota_gateway_requests", "Calls through the base URL", [*labels, "code", "error"], registry=r)
        self.duration = Histogram(
            "rota_gateway_request_duration_seconds", "Until the last byte", labels, registry=r, buckets=LATENCY
        )
        self.ttft = Histogram(
            "rota_gateway_time_to_first_token_seconds", "Streams: until the first token", labels, registry=r, buckets=LATENCY
        )
        self.wake = Histogram(
            "rota_gateway_wake_seconds", "Calls that waited for a sleeping endpoint: how long", labels, registry=r, buckets=WAKE
        )
        self.tokens = Counter("rota_gateway_tokens", "Tokens in and out", [*labels, "direction"], registry=r)
        self.stored = Counter("rota_request_log_records", "Request records stored", registry=r)
        self.duplicates = Counter("rota_request_log_duplicates", "Request records sent again and stored once", registry=r)
        self.kept_out = Counter(
            "rota_request_log_kept_out", "Request records not stored: their project keeps its calls out", registry=r
        )

    def fired(self, applied_at: datetime | None, scheduled_at: datetime | None, trigger: str, missed: bool) -> None:
        if missed:
            self.missed.inc()
        if applied_at is not None and scheduled_at is not None:
            self.fires.labels(trigger).inc()
            self.lateness.labels(trigger).observe(max(0.0, (applied_at - scheduled_at).total_seconds()))

    def requests_logged(self, stored: Sequence[GatewayRecord], names: dict[int | None, tuple[str, str]], duplicates: int) -> None:
        """Count the records just stored (those sent again were counted the first time)."""
        self.stored.inc(len(stored))
        self.duplicates.inc(duplicates)
        for rec in stored:
            project, endpoint = names.get(rec.endpoint_id, ("", ""))
            if not project:
                project = names.get(-(rec.project_id or 0), ("-", ""))[0]  # no endpoint: the caller's project, if any
            who = (project, endpoint, str(rec.endpoint_id) if endpoint else "")
            code = rec.error_code if rec.error_code in KNOWN_ERRORS else ("other" if rec.error_code else "")
            self.requests.labels(*who, str(rec.status), code).inc()
            self.duration.labels(*who).observe(rec.duration_ms / 1000)
            if rec.ttft_ms is not None:
                self.ttft.labels(*who).observe(rec.ttft_ms / 1000)
            if rec.wake_ms is not None:
                self.wake.labels(*who).observe(rec.wake_ms / 1000)
            if rec.input_tokens:
                self.tokens.labels(*who, "input").inc(rec.input_tokens)
            if rec.output_tokens:
                self.tokens.labels(*who, "output").inc(rec.output_tokens)

    def watch(self, collector: Collector) -> None:
        self.registry.register(collector)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class StateCollector(Collector):
    """What is read at each scrape: tasks and endpoints by status, the reconciler's loop,
    Ray's reachability, what gateways say they dropped, and whether this process leads."""

    def __init__(self, db: Database, reconciler: Any, dropped: Callable[[], dict[str, int]], leadership: Any):
        self.db, self.reconciler, self.dropped, self.leadership = db, reconciler, dropped, leadership

    def collect(self) -> Iterable[Any]:
        with self.db.session() as s:
            tasks = s.execute(select(TaskRow.status, func.count()).group_by(TaskRow.status)).all()
            endpoints = s.execute(
                select(EndpointRow.status, func.count())
                .where(EndpointRow.desired != Desired.DELETED.value)
                .group_by(EndpointRow.status)
            ).all()
        yield _gauge("rota_tasks", "Tasks by status", "status", tasks)
        yield _gauge("rota_endpoints", "Endpoints by status", "status", endpoints)
        yield from self._readiness()
        yield from self._loops()
        dropped = GaugeMetricFamily(
            "rota_gateway_request_log_dropped", "Request records a gateway dropped (its buffer was full)", labels=["gateway"]
        )
        for gateway, n in self.dropped().items():
            dropped.add_metric([gateway], n)
        yield dropped

    def _loops(self) -> Iterable[Any]:
        """Whether this process leads; the reconciler's series only where it runs (on a
        standby they would say nothing true)."""
        lead = self.leadership
        yield GaugeMetricFamily(
            "rota_leader", "1 if this control plane runs the scheduler and the reconciler", value=float(lead.leading)
        )
        yield GaugeMetricFamily("rota_leader_epoch", "The lease's epoch this process holds (0: none)", value=lead.epoch or 0)
        yield CounterMetricFamily("rota_leader_elections", "Times this process became the leader", value=lead.elections)
        if not lead.leading:
            return
        rc = self.reconciler
        yield CounterMetricFamily("rota_reconcile_ticks", "Reconcile ticks done", value=rc.ticks)
        yield CounterMetricFamily("rota_ray_puts", "Declarative PUTs sent to Ray Serve", value=rc.puts)
        yield GaugeMetricFamily("rota_reconcile_last_tick_seconds", "Duration of the last tick", value=rc.last_tick_s or 0.0)
        yield GaugeMetricFamily(
            "rota_ray_reachable", "1 if Ray's dashboard answered the last tick", value=float(bool(rc.ray_reachable))
        )

    def _readiness(self) -> Iterable[Any]:
        """ready_by tasks: the share of their last 30 windows whose replicas served in time."""
        labels = ["project", "task"]
        rate = GaugeMetricFamily(
            "rota_task_ready_on_time_ratio", "ready_by windows ready at their written time (last 30)", labels=labels
        )
        windows = GaugeMetricFamily("rota_task_ready_windows", "ready_by windows judged (last 30)", labels=labels)
        with self.db.session() as s:
            judged = select(RunRow.task_id).where(RunRow.ready_state.is_not(None), RunRow.ready_state != "pending").distinct()
            named = select(TaskRow.id, TaskRow.name, ProjectRow.name).join(ProjectRow, ProjectRow.id == TaskRow.project_id)
            tasks = s.execute(named.where(TaskRow.id.in_(judged))).all()
            rates = readiness(s, [t[0] for t in tasks])
        for task_id, task, project in tasks:
            if (r := rates.get(task_id)) is not None:
                rate.add_metric([project, task], r.rate or 0.0)
                windows.add_metric([project, task], r.windows)
        yield from (rate, windows)


class AsyncCollector(Collector):
    """Async queues at each scrape: requests waiting and running, the oldest waiting one's
    age and those answered in the last minute, per endpoint; and what the dispatcher sent
    and recorded since the start."""

    def __init__(self, depths: Callable[[], dict[tuple[str, str], dict[str, Any]]], dispatcher: Any):
        self.depths, self.dispatcher = depths, dispatcher

    def collect(self) -> Iterable[Any]:
        labels = ["project", "endpoint"]
        queued = GaugeMetricFamily("rota_async_queued", "Async requests waiting to be sent", labels=labels)
        running = GaugeMetricFamily("rota_async_running", "Async requests being sent", labels=labels)
        oldest = GaugeMetricFamily("rota_async_oldest_queued_seconds", "Age of the oldest waiting async request", labels=labels)
        done = GaugeMetricFamily(
            "rota_async_done_last_minute", "Async requests answered (succeeded or failed) in the last 60 s", labels=labels
        )
        for (project, endpoint), d in self.depths().items():
            queued.add_metric([project, endpoint], d["queued"])
            running.add_metric([project, endpoint], d["running"])
            oldest.add_metric([project, endpoint], d["oldest_queued_s"] or 0.0)
            done.add_metric([project, endpoint], d["done_last_min"])
        yield from (queued, running, oldest, done)
        d = self.dispatcher
        yield CounterMetricFamily("rota_async_sent", "Async sends that got an answer", value=d.sent)
        yield CounterMetricFamily("rota_async_recorded", "Async requests done (recorded once)", value=d.recorded)
        yield CounterMetricFamily("rota_async_stale", "Answers that came after their lease lapsed (not recorded)", value=d.stale)


REPORT_FRESH_S = 30.0  # a replica reports every 10 s: an older report is of one that is gone
REPLICA_GAUGES = (  # (series, doc, the report's field)
    ("rota_replica_kv_cache_usage", "The engine's KV cache in use, 0..1", "kv_cache_usage"),
    ("rota_replica_cpu_percent", "CPU of one core, summed over the replica's processes", "cpu_percent"),
    ("rota_replica_memory_bytes", "Resident memory of the replica's processes", "memory_bytes"),
    ("rota_replica_gpu_percent", "GPU utilisation of the replica's GPUs", "gpu_percent"),
    ("rota_replica_gpu_memory_bytes", "GPU memory in use on the replica's GPUs", "gpu_memory_bytes"),
)


class ReplicaCollector(Collector):
    """Each endpoint's replicas as the reconciler last saw them (running, target and the
    bounds in force), and what each replica last reported of itself: on the leader only
    (it is the one that looks at Ray), so several control planes never count one twice."""

    def __init__(
        self,
        db: Database,
        seen: Callable[[], dict[int, Any]],
        leading: Callable[[], bool],
        clock: Callable[[], float] = time.time,
    ):
        self.db, self.seen, self.leading, self.clock = db, seen, leading, clock

    def collect(self) -> Iterable[Any]:
        labels = ["project", "endpoint", "endpoint_id"]
        replicas = GaugeMetricFamily(
            "rota_endpoint_replicas", "Replicas running and targeted, and the bounds in force", labels=[*labels, "state"]
        )
        engine = GaugeMetricFamily(
            "rota_replica_engine_requests", "Requests the engine runs and holds waiting", labels=[*labels, "replica", "state"]
        )
        gauges = [GaugeMetricFamily(name, doc, labels=[*labels, "replica"]) for name, doc, _ in REPLICA_GAUGES]
        if self.leading():
            seen = self.seen()
            with self.db.session() as s:
                reports = s.scalars(
                    select(ReplicaStatsRow)
                    .where(ReplicaStatsRow.at >= self.clock() - REPORT_FRESH_S)
                    .order_by(ReplicaStatsRow.at)
                ).all()
                last = {(r.endpoint_id, r.replica): r for r in reports}  # the newest of each replica
                names = {ep: (*named, str(ep)) for ep, named in endpoint_names(s, set(seen) | {ep for ep, _ in last}).items()}
            for ep, c in seen.items():
                if ep in names:
                    for state in ("running", "target", "min", "max"):
                        if (v := getattr(c, state)) is not None:
                            replicas.add_metric([*names[ep], state], v)
            for (ep, replica), r in last.items():
                if ep not in names:
                    continue
                for g, (_, _, field) in zip(gauges, REPLICA_GAUGES, strict=True):
                    if (v := getattr(r, field)) is not None:
                        g.add_metric([*names[ep], replica], v)
                for state, v in (("running", r.engine_running), ("waiting", r.engine_waiting)):
                    if v is not None:
                        engine.add_metric([*names[ep], replica, state], v)
        yield from (replicas, engine, *gauges)


def _gauge(name: str, doc: str, label: str, rows: Iterable[Any]) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=[label])
    for value, n in rows:
        g.add_metric([str(value)], n)
    return g
