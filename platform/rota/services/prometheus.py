"""An endpoint's monitoring series read from a Prometheus that scrapes the control plane's
``/metrics`` (``ROTA_PROMETHEUS_URL``), instead of from the control plane's own store.

Each figure of a step (t - step, t] is one PromQL expression evaluated at t over the
window (``/api/v1/query_range``):

- calls by status, latency and TTFT quantiles, tokens: what the counters and histograms
  the control plane keeps of the request records (``rota_gateway_*``) gained in the step.
  The gain is the counter now minus the counter a step before, not ``increase()``, which
  extrapolates to the step's edges and would make 9 calls 10; a counter that restarted
  (a control plane restart) counts from zero. Calls are counted in the step of the scrape
  that first saw their record (sent up to a second after the call ended): a step shorter
  than the scrape interval has bursts and gaps. Series are selected by ``endpoint_id``, so a
  renamed endpoint keeps its history. Quantiles come from
  the histograms' buckets, interpolated as Prometheus does (``histogram_quantile``).
- replicas running and targeted and the bounds in force, the engines' KV cache and
  queues, and each replica's hardware: the last value of the leader's gauges
  (``rota_endpoint_replicas``, ``rota_replica_*``) in the step, or in twice the scrape
  interval before its end when the step is shorter.

Calls in flight at a step's end and inter-token latency need each call's own times: they
still come from the request log.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from rota.services.replica_figures import HardwarePoint, ReplicaHardware

if TYPE_CHECKING:
    from rota.services.monitoring import Point

Result = list[tuple[dict[str, str], list[tuple[float, float]]]]  # (labels, [(time, value)]) per series
HARDWARE = {  # HardwarePoint's field -> series
    "cpu_percent": "rota_replica_cpu_percent",
    "memory_bytes": "rota_replica_memory_bytes",
    "gpu_percent": "rota_replica_gpu_percent",
    "gpu_memory_bytes": "rota_replica_gpu_memory_bytes",
}


class PrometheusError(Exception):
    """Prometheus gave no figures for this series. ``down``: it failed as a server (no
    answer, a 5xx, a token that cannot be read), so it is left alone a while."""

    def __init__(self, message: str, down: bool = False):
        super().__init__(message)
        self.down = down


def label(value: str) -> str:
    """A PromQL string literal: the value quoted, its backslashes, quotes and line breaks escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def queries(endpoint_id: int, step_s: float, lookback_s: float) -> dict[str, str]:
    """The PromQL of every figure, for one endpoint (by id: a rename keeps its series) and
    step; a gauge's last value is looked for at least ``lookback_s`` back (a step shorter
    than the scrape interval would find none in most steps)."""
    sel = f"{{endpoint_id={label(str(endpoint_id))}}}"
    window = f"{max(1, round(step_s * 1000))}ms"
    recent = f"{max(1, round(max(step_s, lookback_s) * 1000))}ms"

    def gained(metric: str) -> str:
        now, before = f"{metric}{sel}", f"{metric}{sel} offset {window}"
        return f"((({now} - {before}) >= 0) or {now})"

    def last(metric: str) -> str:
        return f"last_over_time({metric}{sel}[{recent}])"

    def quantile(q: float, histogram: str) -> str:
        return f"histogram_quantile({q}, sum by (le) ({gained(histogram + '_bucket')}))"

    out = {
        "calls": f"sum by (code) ({gained('rota_gateway_requests_total')})",
        "tokens": f"sum by (direction) ({gained('rota_gateway_tokens_total')})",
        "replicas": f"max by (state) ({last('rota_endpoint_replicas')})",
        "kv": f"max({last('rota_replica_kv_cache_usage')})",
        # per replica first: two control planes exporting one replica (a handover) count it once
        "engine": f"sum by (state) (max by (replica, state) ({last('rota_replica_engine_requests')}))",
    }
    for q in (0.5, 0.95, 0.99):
        out[f"latency_p{round(q * 100)}"] = quantile(q, "rota_gateway_request_duration_seconds")
    for q in (0.5, 0.95):
        out[f"ttft_p{round(q * 100)}"] = quantile(q, "rota_gateway_time_to_first_token_seconds")
    for figure, metric in HARDWARE.items():
        out[figure] = f"max by (replica) ({last(metric)})"
    return out


@dataclass
class Prometheus:
    url: str
    timeout_s: float = 5.0  # for all of one series' queries together
    token_path: Path | None = None  # a bearer token, read at each query (so it can be rotated)
    scrape_s: float = 15.0  # how often it scrapes the control plane: a gauge is looked for twice that far back
    rest_s: float = 30.0  # after a failure, the store answers alone this long (no caller waits on a dead Prometheus)
    clock: Callable[[], float] = time.monotonic
    _failed_at: float | None = None
    _last_error: str = ""
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=14, thread_name_prefix="prometheus"))
    _turn: threading.BoundedSemaphore = field(default_factory=threading.BoundedSemaphore)
    _http: httpx.Client = field(default_factory=httpx.Client)

    def query_range(self, query: str, start: float, end: float, step: float, timeout: float) -> Result:
        headers = {"Authorization": f"Bearer {self.token_path.read_text().strip()}"} if self.token_path else {}
        r = self._http.get(
            f"{self.url.rstrip('/')}/api/v1/query_range",
            params={"query": query, "start": start, "end": end, "step": step},
            headers=headers,
            timeout=timeout,
        )
        body = r.json()
        if r.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"{r.status_code}: {str(body.get('error') or r.text)[:200]}", down=r.status_code >= 500)
        return [(x["metric"], [(float(t), float(v)) for t, v in x["values"]]) for x in body["data"]["result"] if x.get("values")]

    def fill(self, points: Sequence[Point], endpoint_id: int, step: float) -> list[ReplicaHardware]:
        """Lay Prometheus' figures on ``points`` (step i covers (lo + i * step, lo + (i + 1) *
        step], evaluated at its end); the hardware per replica. Raises ``PrometheusError``
        when it does not answer in time, answers wrong, or holds nothing of this endpoint."""
        now = self.clock()
        if self._failed_at is not None and now - self._failed_at < self.rest_s:
            raise PrometheusError(
                f"{self._last_error} ({now - self._failed_at:.0f} s ago; asked again after {self.rest_s:.0f} s)"
            )
        # A series at a time runs (its 14 queries at once): the deadline starts when its turn comes.
        if not self._turn.acquire(timeout=self.timeout_s):
            raise PrometheusError("busy with other series: the store's figures this time")
        try:
            return self._fill(points, endpoint_id, step)
        finally:
            self._turn.release()

    def _fill(self, points: Sequence[Point], endpoint_id: int, step: float) -> list[ReplicaHardware]:
        lo = points[0].time.timestamp()
        todo = queries(endpoint_id, step, 2 * self.scrape_s)
        end, deadline = lo + len(points) * step, self.clock() + self.timeout_s
        futures = {k: self._pool.submit(self.query_range, q, lo + step, end, step, self.timeout_s) for k, q in todo.items()}
        try:
            _, late = wait(futures.values(), timeout=max(0.0, deadline - self.clock()))
            if late:
                raise PrometheusError(f"no answer within {self.timeout_s} s", down=True)
            results = {k: f.result() for k, f in futures.items()}
        except PrometheusError as e:
            self._failed(str(e), futures.values(), e.down)
            raise
        except (httpx.HTTPError, OSError) as e:  # unreachable, or a token file that cannot be read
            self._failed(f"{type(e).__name__}: {str(e)[:200]}", futures.values(), True)
            raise PrometheusError(self._last_error, down=True) from None
        except Exception as e:  # an answer of another shape
            raise PrometheusError(f"{type(e).__name__}: {str(e)[:200]}") from None
        self._failed_at = None
        if not any(results.values()):  # this endpoint's alone: the others' series are still read from it
            raise PrometheusError("it holds no series of this endpoint in the window (does it scrape this control plane?)")
        return apply(points, results, step)

    def _failed(self, error: str, futures: Iterable[Future[Result]], down: bool) -> None:
        for f in futures:
            f.cancel()
        if down:
            self._failed_at, self._last_error = self.clock(), error


def _at(results: Result, lo: float, step: float, n: int) -> list[list[tuple[dict[str, str], float]]]:
    """Per step, each series' value at its end (NaN left out)."""
    out: list[list[tuple[dict[str, str], float]]] = [[] for _ in range(n)]
    for labels, values in results:
        for t, v in values:
            i = round((t - lo) / step) - 1
            if 0 <= i < n and not math.isnan(v):
                out[i].append((labels, v))
    return out


def apply(points: Sequence[Point], results: dict[str, Result], step: float) -> list[ReplicaHardware]:
    """Prometheus' figures on ``points`` (the request log's calls in flight and inter-token
    latency are left as they are), and each replica's hardware. Every step is a whole one
    (the last may reach past the window's end): rates are over ``step``."""
    n = len(points)
    lo = points[0].time.timestamp() if points else 0.0

    def at(key: str) -> list[list[tuple[dict[str, str], float]]]:
        return _at(results.get(key, []), lo, step, n)

    def single(key: str) -> list[float | None]:
        return [vals[0][1] if vals else None for vals in at(key)]

    calls, tokens, replicas, engine = at("calls"), at("tokens"), at("replicas"), at("engine")
    kv = single("kv")
    quantiles = {k: single(k) for k in ("latency_p50", "latency_p95", "latency_p99", "ttft_p50", "ttft_p95")}
    for i, p in enumerate(points):
        width = step
        by_code = [(int(labels.get("code", "0") or 0), round(v)) for labels, v in calls[i]]
        total = sum(v for _, v in by_code)
        client = sum(v for code, v in by_code if 400 <= code < 500)
        server = sum(v for code, v in by_code if code >= 500)
        p.requests, p.requests_per_s = total, round(total / width, 6)
        p.ok, p.client_errors, p.server_errors = total - client - server, client, server
        p.error_rate = round((client + server) / total, 6) if total else None
        ms = {k: (None if (x := v[i]) is None else round(x * 1000, 3)) for k, v in quantiles.items()}
        p.latency_ms.p50, p.latency_ms.p95, p.latency_ms.p99 = ms["latency_p50"], ms["latency_p95"], ms["latency_p99"]
        p.ttft_ms.p50, p.ttft_ms.p95 = ms["ttft_p50"], ms["ttft_p95"]
        toks = {labels.get("direction"): v for labels, v in tokens[i]}
        p.input_tokens_per_s = round(toks.get("input", 0.0) / width, 6)
        p.output_tokens_per_s = round(toks.get("output", 0.0) / width, 6)
        states = {labels.get("state"): round(v) for labels, v in replicas[i]}
        p.replicas_running, p.replicas_target = states.get("running"), states.get("target")
        p.min_replicas, p.max_replicas = states.get("min"), states.get("max")
        p.kv_cache_usage = kv[i]
        queued = {labels.get("state"): v for labels, v in engine[i]}
        p.engine_running, p.engine_waiting = queued.get("running"), queued.get("waiting")
    per: dict[str, dict[int, HardwarePoint]] = {}
    for figure in HARDWARE:
        for i, vals in enumerate(at(figure)):
            for labels, v in vals:
                replica = labels.get("replica", "")
                hp = per.setdefault(replica, {}).setdefault(i, HardwarePoint(time=points[i].time))
                setattr(hp, figure, v)
    return [ReplicaHardware(replica=r, points=[steps[i] for i in sorted(steps)]) for r, steps in sorted(per.items())]
