"""Schedule math: when does a task fire, in UTC. Pure functions of (schedule, instant).

DST policy (documented in the README, proven by tests/unit/test_dst_property.py):

* A local time that does not exist (spring forward, or a zone skipping ahead) fires at
  the same *distance* past the jump: 02:30 on a day the clock jumps 02:00 -> 03:00 fires
  at 03:30 local. The entry still fires exactly once that local day.
* A local time that happens twice (fall back) fires once, at its **first** occurrence.
* If shifting makes two entries land on the same instant, they fire once, with the
  bounds of the entry whose nominal local time is later (it is the one "in force").

All instants are timezone-aware UTC datetimes; local times are computed with pytz.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from enum import Enum
from typing import Any

import pytz


class TaskType(str, Enum):
    ONE_OFF = "one_off"
    DAILY = "daily"


UTC = pytz.utc
ONE_OFF_YEARS = (1970, 2999)  # fire instants stay far from datetime's limits

_TIME_RE = re.compile(r"^([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?$")
_DATETIME_RE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?$")


def parse_time_of_day(text: str) -> time:
    """``HH:MM`` or ``HH:MM:SS`` (24 h). Raises ValueError with a readable message."""
    m = _TIME_RE.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"{text!r} is not a time of day; use HH:MM, e.g. 09:00")
    hh, mm, ss = int(m[1]), int(m[2]), int(m[3] or 0)
    if hh > 23 or mm > 59 or ss > 59:
        raise ValueError(f"{text!r} is not a valid time of day")
    return time(hh, mm, ss)


def parse_local_datetime(text: str) -> datetime:
    """A naive local date-time ``YYYY-MM-DDTHH:MM[:SS]`` (no UTC offset: the task's zone applies)."""
    m = _DATETIME_RE.match(text.strip()) if isinstance(text, str) else None
    if not m:
        if isinstance(text, str) and _TIME_RE.match(text.strip()):
            raise ValueError(f"{text!r} has no date; a one_off time is a local date-time like 2026-11-23T09:30")
        raise ValueError(f"{text!r} is not a local date-time; use YYYY-MM-DDTHH:MM without an offset, e.g. 2026-11-23T09:30")
    if not ONE_OFF_YEARS[0] <= int(m[1]) <= ONE_OFF_YEARS[1]:
        raise ValueError(f"{text!r}: the year must be between {ONE_OFF_YEARS[0]} and {ONE_OFF_YEARS[1]}")
    try:
        return datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6] or 0))
    except ValueError as e:
        raise ValueError(f"{text!r} is not a valid date-time: {e}") from None


def get_timezone(name: str) -> pytz.BaseTzInfo:
    try:
        return pytz.timezone(name)
    except (pytz.UnknownTimeZoneError, AttributeError, TypeError):
        raise ValueError(f"{name!r} is not an IANA timezone name (e.g. Europe/Paris, America/New_York, UTC)") from None


def to_utc(tz: pytz.BaseTzInfo, naive: datetime) -> datetime:
    """The UTC instant at which local wall time ``naive`` occurs in ``tz``, per the DST policy.

    The offsets in force around ``naive`` are probed directly rather than trusting
    pytz's ``is_dst`` flag, whose meaning differs in zones whose offset changes are not
    DST (e.g. a zone moving its standard offset).
    """
    offsets = {_offset(tz, naive + timedelta(hours=h)) for h in (-48, -24, -6, 6, 24, 48)}
    valid = []
    for off in offsets:
        instant = (naive - off).replace(tzinfo=UTC)
        if instant.astimezone(tz).replace(tzinfo=None) == naive:
            valid.append(instant)
    if valid:
        return min(valid)  # normal time: one candidate; fall back: the first occurrence
    # A gap: interpret the wall time with the offset in force before the jump, which
    # lands the same distance past the jump.
    before = _offset(tz, naive - timedelta(hours=48))
    for h in (24, 6, 3, 1):
        try:
            before = _offset(tz, naive - timedelta(hours=h), is_dst=None)
            break
        except (pytz.NonExistentTimeError, pytz.AmbiguousTimeError):
            continue
    return (naive - before).replace(tzinfo=UTC)


def _offset(tz: pytz.BaseTzInfo, naive: datetime, is_dst: bool | None = False) -> timedelta:
    return tz.localize(naive, is_dst=is_dst).utcoffset() or timedelta(0)


def to_local(tz: pytz.BaseTzInfo, instant: datetime) -> datetime:
    return instant.astimezone(tz)


@dataclass(frozen=True)
class Entry:
    """One schedule entry: its parsed time and the replica bounds it sets."""

    index: int
    at: time | datetime  # time of day (daily) or naive local date-time (one-off)
    min_replicas: int
    max_replicas: int
    ready_by: bool = False  # a scale-up fires early by the spec's lead so replicas serve at ``at``


@dataclass(frozen=True)
class Occurrence:
    """A fire: the UTC instant, the entry whose bounds apply and its nominal local date.
    ``ready_by``: on a ready_by scale-up, the written instant its replicas should serve by
    (``at`` is earlier). A fire is known by its ``written`` instant: a new lead never refires it."""

    at: datetime
    entry: Entry
    local_date: date
    # (local date, entry index) of entries that landed on the same instant and fire as this one
    merged: tuple[tuple[date, int], ...] = ()
    ready_by: datetime | None = None

    @property
    def written(self) -> datetime:
        return self.ready_by or self.at


@dataclass(frozen=True)
class ScheduleSpec:
    type: TaskType
    timezone: str
    entries: tuple[Entry, ...]
    lead: timedelta = timedelta(0)  # how early a ready_by scale-up fires (the endpoint's cold start + margin)

    @property
    def tz(self) -> pytz.BaseTzInfo:
        return get_timezone(self.timezone)

    @property
    def ready_by(self) -> bool:
        return any(e.ready_by for e in self.entries)

    @classmethod
    def build(
        cls,
        type_: TaskType | str,
        timezone: str,
        schedule: Sequence[dict[str, Any]],
        ready_by: bool = False,
        lead: timedelta = timedelta(0),
    ) -> ScheduleSpec:
        """``ready_by``: the task's default for entries that do not say."""
        t = TaskType(type_)
        parse = parse_local_datetime if t is TaskType.ONE_OFF else parse_time_of_day
        entries = tuple(
            Entry(
                i,
                parse(e["time"]),
                int(e["min_replicas"]),
                int(e["max_replicas"]),
                bool(ready_by if e.get("ready_by") is None else e["ready_by"]),
            )
            for i, e in enumerate(schedule)
        )
        return cls(t, timezone, entries, lead)


def occurrences(spec: ScheduleSpec, after: datetime, until: datetime | None = None) -> Iterator[Occurrence]:
    """Fires whose written instant is strictly after ``after`` and whose fire instant is at
    or before ``until`` (unbounded if None), in order.

    A ``ready_by`` entry that raises ``min_replicas`` over the entry in force before it
    fires ``spec.lead`` early, but never before the fire of that previous entry: landing
    on it, the two fire once with the later entry's bounds (the DST collision rule). A
    scale-down always fires at its written time. The catch-up and DST rules apply to the
    early instant unchanged.
    """
    if not (spec.ready_by and spec.lead > timedelta(0)):
        yield from _written(spec, after, until)
        return
    # Fire instants never decrease and none is more than ``lead`` early: a day of history is enough.
    pending, before, history = None, None, spec.lead + timedelta(days=1)  # before: min_replicas in force before
    for occ in _written(spec, after - history if after - datetime.min.replace(tzinfo=UTC) > history else after):
        e = occ.entry
        if e.ready_by and e.min_replicas >= 1 and (before is None or e.min_replicas > before):
            early = occ.at - spec.lead if pending is None else max(occ.at - spec.lead, pending.at)
            occ = replace(occ, at=early, ready_by=occ.at)
        before = e.min_replicas
        if pending is not None and occ.at == pending.at:
            occ = replace(occ, merged=(*pending.merged, (pending.local_date, pending.entry.index), *occ.merged))
        elif pending is not None and pending.written > after:
            if until is not None and pending.at > until:
                return
            yield pending
        pending = occ
    if pending is not None and pending.written > after and (until is None or pending.at <= until):
        yield pending


def _written(spec: ScheduleSpec, after: datetime, until: datetime | None = None) -> Iterator[Occurrence]:
    """Fires at their written instants, strictly after ``after`` and at or before ``until``."""
    tz = spec.tz
    if spec.type is TaskType.ONE_OFF:
        e = spec.entries[0]
        assert isinstance(e.at, datetime)
        at = to_utc(tz, e.at)
        if at > after and (until is None or at <= until):
            yield Occurrence(at, e, e.at.date())
        return
    # Local days are expanded into a heap and released only once no later day can
    # produce an earlier instant: a time shifted past a gap late in one day (e.g. a
    # 23:00 jump) can land after the next day's first entries. No zone's offset
    # exceeds +-14h, so every fire of local day D is at or after D 00:00 UTC - 26h.
    heap: list[tuple[datetime, date, time, int]] = []
    day = after.astimezone(tz).date() - timedelta(days=2)
    while True:
        for e in spec.entries:
            assert isinstance(e.at, time)
            heapq.heappush(heap, (to_utc(tz, datetime.combine(day, e.at)), day, e.at, e.index))
        day += timedelta(days=1)
        bound = datetime.combine(day, time()).replace(tzinfo=UTC) - timedelta(hours=26)
        while heap and heap[0][0] < bound:
            same = [heapq.heappop(heap)]
            while heap and heap[0][0] == same[0][0]:
                same.append(heapq.heappop(heap))
            at = same[0][0]
            if at <= after:
                continue
            if until is not None and at > until:
                return
            # On a collision the entry with the latest nominal local time is in force.
            same.sort(key=lambda x: (x[1], x[2]))
            _, d, _, idx = same[-1]
            yield Occurrence(at, spec.entries[idx], d, tuple((x[1], x[3]) for x in same[:-1]))


def next_occurrence(spec: ScheduleSpec, after: datetime) -> Occurrence | None:
    return next(occurrences(spec, after), None)


def next_occurrences(spec: ScheduleSpec, after: datetime, count: int) -> list[Occurrence]:
    out = []
    for occ in occurrences(spec, after):
        out.append(occ)
        if len(out) >= count:
            break
    return out


@dataclass(frozen=True)
class CatchUp:
    """What to do about fires that fell due while nothing was watching."""

    apply: Occurrence | None  # the fire to apply now (None: nothing due, or too late)
    skipped: int  # earlier due fires superseded by ``apply`` (daily) — not applied
    missed: Occurrence | None  # a one-off fire that is past its grace period


def plan_catch_up(spec: ScheduleSpec, since: datetime, now: datetime, grace: timedelta) -> CatchUp:
    """Decide the catch-up for fires in (since, now].

    Daily: apply the latest due entry once, skip the earlier ones (their bounds are
    already superseded). One-off: fire if it is at most ``grace`` late (counted from
    ``since`` when it fell due before it, e.g. activated within its ready_by lead), else missed.
    """
    due = list(occurrences(spec, since, now))
    if not due:
        return CatchUp(None, 0, None)
    if spec.type is TaskType.ONE_OFF:
        occ = due[0]
        if now - max(occ.at, since) <= grace:
            return CatchUp(occ, 0, None)
        return CatchUp(None, 0, occ)
    return CatchUp(due[-1], len(due) - 1, None)


def next_window(specs: Sequence[ScheduleSpec], after: datetime, horizon: int = 500) -> datetime | None:
    """The first fire after ``after`` of any of these schedules (``ScheduleSpec``s of active
    tasks) whose entry keeps at least one replica: when queued ``run_in_window`` work runs."""
    best: datetime | None = None
    for spec in specs:
        for n, occ in enumerate(occurrences(spec, after)):
            if best is not None and occ.at >= best:
                break
            if occ.entry.min_replicas >= 1:
                best = occ.at
                break
            if n >= horizon:
                break
    return best
