"""Usage and cost: replica-seconds split into hours as they are measured, and what a
schedule commits to (its min bounds: the floor) and allows (its max bounds: the
ceiling), day by day in its timezone. A local day is as long as it is: 23 or 25 hours
on the days the clocks change."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from rota.domain.schedule import ScheduleSpec, TaskType, occurrences, to_utc

HOUR_S = 3600.0


def hours_split(start: float, end: float) -> Iterator[tuple[float, float]]:
    """``[start, end)`` (Unix seconds) as (hour start, seconds in that hour) pieces."""
    t = start
    while t < end:
        hour = t - t % HOUR_S
        stop = min(end, hour + HOUR_S)
        yield hour, stop - t
        t = stop


@dataclass(frozen=True)
class DayCommitment:
    day: date  # local
    hours: float  # the local day's length
    floor_replica_hours: float
    ceiling_replica_hours: float


def _bounds_at(spec: ScheduleSpec, at: datetime, before: tuple[int, int]) -> tuple[int, int]:
    """The bounds in force at ``at``: the last fire at or before it, else ``before``."""
    last = None
    # A daily schedule fired within the last days; a one-off may have fired at any time.
    since = at - timedelta(days=3) if spec.type is TaskType.DAILY else datetime.min.replace(tzinfo=timezone.utc)
    for occ in occurrences(spec, since, at):
        last = occ
    if last is None:
        return before
    return last.entry.min_replicas, last.entry.max_replicas


@dataclass(frozen=True)
class Segment:
    start_h: float  # hours since the local day began (elapsed: a 23- or 25-hour day is so long)
    end_h: float
    min_replicas: int
    max_replicas: int


@dataclass(frozen=True)
class DayBounds:
    day: date  # local
    hours: float  # the local day's length
    segments: tuple[Segment, ...]


def day_bounds(spec: ScheduleSpec, first_day: date, days: int, before: tuple[int, int]) -> list[DayBounds]:
    """The bounds in force through each local day from ``first_day`` on, as segments
    between fires. ``before``: the bounds until the schedule's first fire (a one-off that
    has not fired yet: the endpoint's own)."""
    tz = spec.tz
    edges = [to_utc(tz, datetime.combine(first_day + timedelta(days=i), time())) for i in range(days + 1)]
    state = _bounds_at(spec, edges[0], before)
    changes = [(o.at, (o.entry.min_replicas, o.entry.max_replicas)) for o in occurrences(spec, edges[0], edges[-1])]
    out, k = [], 0
    for i in range(days):
        lo, hi = edges[i], edges[i + 1]
        t, segments = lo, []
        while k < len(changes) and changes[k][0] < hi:
            at, new = changes[k]
            if at > t:
                segments.append(Segment((t - lo).total_seconds() / HOUR_S, (at - lo).total_seconds() / HOUR_S, *state))
            t, state, k = at, new, k + 1
        segments.append(Segment((t - lo).total_seconds() / HOUR_S, (hi - lo).total_seconds() / HOUR_S, *state))
        out.append(DayBounds(first_day + timedelta(days=i), (hi - lo).total_seconds() / HOUR_S, tuple(segments)))
    return out


def commitments(spec: ScheduleSpec, first_day: date, days: int, before: tuple[int, int]) -> list[DayCommitment]:
    """Replica-hours of each local day from ``first_day`` on: at least (min bounds) and at
    most (max bounds). ``before``: as for ``day_bounds``."""
    return [
        DayCommitment(
            d.day,
            d.hours,
            sum((g.end_h - g.start_h) * g.min_replicas for g in d.segments),
            sum((g.end_h - g.start_h) * g.max_replicas for g in d.segments),
        )
        for d in day_bounds(spec, first_day, days, before)
    ]
