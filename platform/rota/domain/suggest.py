"""Suggested schedules: the traffic of past days, as a daily pattern of replica bounds. Pure.

For each period of the local day (an hour by default) and each analysed day, the traffic
is the period's **mean concurrency** (request-seconds / period length) and its **peak
concurrency** (most requests in flight at once). Over the days, a period needs

    min_replicas = ceil(max mean concurrency  x (1 + headroom) / target_ongoing_requests)
    max_replicas = max(min_replicas, 1, ceil(max peak concurrency x (1 + headroom) / target))

except that a period whose mean concurrency is under ``IDLE`` x target (a call now and
then, or none) gets 0..max: it sleeps and a request wakes it. Consecutive periods with
the same bounds make one entry. Local periods follow the wall clock, so a 23- or 25-hour
day has one period less or more.

``cold_waits`` replays the calls against a schedule: a call waits for a cold start when
the schedule's min was 0 at its time or ``cold_s`` before it, and no call kept the
endpoint awake (one ended less than ``cooldown_s`` before it) or a start is under way. It
does not count replicas still draining after a scheduled period: it errs towards waits.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from rota.domain.schedule import ScheduleSpec, get_timezone, occurrences, to_utc

IDLE = 0.1  # a period whose traffic fills less than this share of one replica sleeps and wakes on request


@dataclass(frozen=True, slots=True)
class Call:
    start: float  # Unix seconds
    end: float


@dataclass(frozen=True)
class Period:
    start_min: int  # minutes after local midnight (wall clock)
    mean: float  # the highest mean concurrency over the days
    peak: int  # the highest peak concurrency over the days
    min_replicas: int
    max_replicas: int


def _local_periods(zone: str, day: date, period_min: int) -> list[tuple[int, float, float]]:
    """(minute of the day, start, end) of each wall-clock period of ``day`` that exists."""
    tz = get_timezone(zone)
    out = []
    for m in range(0, 24 * 60, period_min):
        lo = to_utc(tz, datetime.combine(day, time()) + timedelta(minutes=m)).timestamp()
        hi = to_utc(tz, datetime.combine(day, time()) + timedelta(minutes=m + period_min)).timestamp()
        if hi > lo:  # a period inside a skipped hour has no length
            out.append((m, lo, hi))
    return out


def _mean_and_peak(calls: Sequence[Call], starts: Sequence[float], longest: float, lo: float, hi: float) -> tuple[float, int]:
    """Mean and peak concurrency of ``calls`` (sorted by start, none longer than ``longest``) over [lo, hi)."""
    busy, edges = 0.0, []
    for c in calls[bisect.bisect_left(starts, lo - longest) : bisect.bisect_left(starts, hi)]:
        if c.end <= lo:
            continue
        a, b = max(c.start, lo), min(c.end, hi)
        busy += max(0.0, b - a)
        edges += [(a, 1), (b, -1)]
    peak = now = 0
    for _, d in sorted(edges, key=lambda x: (x[0], x[1])):  # an end before a start at the same instant
        now += d
        peak = max(peak, now)
    return busy / (hi - lo), peak


def replicas(concurrency: float, target: float, headroom: float) -> int:
    return math.ceil(round(concurrency * (1 + headroom) / target, 9)) if concurrency > 0 else 0


def pattern(
    calls: Sequence[Call], zone: str, days: Sequence[date], period_min: int, target: float, headroom: float, cap: int
) -> list[Period]:
    """Each period of the local day and the bounds it needs over ``days`` (at most ``cap``)."""
    calls = sorted(calls, key=lambda c: c.start)
    starts = [c.start for c in calls]
    longest = max((c.end - c.start for c in calls), default=0.0)
    worst: dict[int, tuple[float, int]] = {m: (0.0, 0) for m in range(0, 24 * 60, period_min)}
    for day in days:
        for m, lo, hi in _local_periods(zone, day, period_min):
            mean, peak = _mean_and_peak(calls, starts, longest, lo, hi)
            worst[m] = (max(worst[m][0], mean), max(worst[m][1], peak))
    out = []
    for m, (mean, peak) in sorted(worst.items()):
        lo = min(cap, replicas(mean, target, headroom)) if mean >= IDLE * target else 0
        out.append(Period(m, round(mean, 6), peak, lo, min(cap, max(lo, 1, replicas(peak, target, headroom)))))
    return out


def entries(periods: Sequence[Period], ready_by: bool) -> list[dict[str, object]]:
    """A daily schedule: an entry where the bounds change (one at 00:00 if they never do)."""
    out: list[dict[str, object]] = []
    for i, p in enumerate(periods):
        prev = periods[i - 1]  # the day is a cycle: 00:00 follows the last period
        if i == 0 or (p.min_replicas, p.max_replicas) != (prev.min_replicas, prev.max_replicas):
            e: dict[str, object] = {"time": f"{p.start_min // 60:02d}:{p.start_min % 60:02d}"}
            e.update(min_replicas=p.min_replicas, max_replicas=p.max_replicas)
            if ready_by and p.min_replicas > (prev.min_replicas if len(periods) > 1 else 0):
                e["ready_by"] = True
            out.append(e)
    if len(out) > 1 and (out[0]["min_replicas"], out[0]["max_replicas"]) == (out[-1]["min_replicas"], out[-1]["max_replicas"]):
        out = out[1:]  # 00:00 continues the evening's bounds: no entry needed
    return out


def min_replicas_at(spec: ScheduleSpec | None, constant: int, start: float, end: float) -> Callable[[float], int]:
    """The min bound in force at any instant of [start, end] (Unix s) under ``spec``, or a
    constant one (an endpoint's own scaling)."""
    if spec is None:
        return lambda t: constant
    lo = datetime.fromtimestamp(start, tz=timezone.utc) - timedelta(days=3)
    fires = [
        (o.at.timestamp(), o.entry.min_replicas) for o in occurrences(spec, lo, datetime.fromtimestamp(end, tz=timezone.utc))
    ]
    instants = [f[0] for f in fires]

    def at(t: float) -> int:
        i = bisect.bisect_right(instants, t) - 1
        return fires[i][1] if i >= 0 else constant

    return at


def cold_waits(calls: Sequence[Call], min_at: Callable[[float], int], cold_s: float, cooldown_s: float) -> int:
    """How many calls would have waited for a cold start (see the module's docstring)."""
    waits, awake_until, ready_at = 0, float("-inf"), float("-inf")
    for c in sorted(calls, key=lambda c: c.start):
        scheduled = min_at(c.start) >= 1 and min_at(c.start - cold_s) >= 1
        if not (scheduled or ready_at <= c.start <= awake_until):
            waits += 1
            if c.start >= ready_at:  # asleep: this call wakes it (else it waits for a start under way)
                ready_at = c.start + cold_s
        awake_until = max(awake_until, max(c.end, ready_at) + cooldown_s)
    return waits
