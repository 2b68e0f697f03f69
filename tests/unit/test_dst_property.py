"""The DST policy over every pytz timezone, across several years.

For every zone and every transition in 2026-2031 (plus random days): each daily entry
fires exactly once per local day (or is merged into an entry landing on the same
instant), fire instants strictly increase, a normal local time fires at that local
time, a skipped local time fires the length of the gap later, and a repeated local
time fires at its first occurrence.
"""

from datetime import date, datetime, time, timedelta

import pytest
import pytz
from hypothesis import given, settings
from hypothesis import strategies as st

from rota.domain.schedule import ScheduleSpec, occurrences, to_utc

UTC = pytz.utc
YEARS = range(2026, 2032)
ZONES = sorted(pytz.all_timezones)


def transitions(tz, years=YEARS):
    out = []
    for t in getattr(tz, "_utc_transition_times", []) or []:
        if t.year in years:
            out.append(UTC.localize(t))
    return out


def check_instant(tz, naive: datetime, instant: datetime):
    """The policy for one local wall time."""
    local = instant.astimezone(tz).replace(tzinfo=None)
    candidates = [
        u for u in (instant - timedelta(hours=h) for h in range(0, 27)) if u.astimezone(tz).replace(tzinfo=None) == naive
    ]
    if local == naive:
        # normal or repeated: it must be the earliest instant showing that wall time
        assert not any(u < instant for u in candidates), (tz.zone, naive, instant)
    else:
        # skipped: the wall time never shows; the fire lands later by the gap, same day or just after
        assert local > naive, (tz.zone, naive, instant, local)
        assert local - naive <= timedelta(hours=24), (tz.zone, naive, local)


def check_days(zone: str, times: list[time], start: date, days: int):
    spec = ScheduleSpec.build(
        "daily", zone, [{"time": t.strftime("%H:%M:%S"), "min_replicas": 1, "max_replicas": 1} for t in times]
    )
    tz = spec.tz
    after = to_utc(tz, datetime.combine(start, time(0))) - timedelta(seconds=1)
    until = to_utc(tz, datetime.combine(start + timedelta(days=days), time(0))) - timedelta(seconds=1)
    occs = list(occurrences(spec, after, until))
    instants = [o.at for o in occs]
    assert instants == sorted(set(instants)), f"{zone}: not strictly increasing"
    covered: dict[tuple[date, int], int] = {}
    for o in occs:
        for key in ((o.local_date, o.entry.index), *o.merged):
            covered[key] = covered.get(key, 0) + 1
        check_instant(tz, datetime.combine(o.local_date, o.entry.at), o.at)
    for d in (start + timedelta(days=k) for k in range(days)):
        for i in range(len(times)):
            assert covered.get((d, i)) == 1, f"{zone} {d} entry {i} ({times[i]}) fired {covered.get((d, i), 0)} times"


@pytest.mark.parametrize("zone", ZONES)
def test_every_transition_of_every_zone(zone):
    tz = pytz.timezone(zone)
    for tr in transitions(tz):
        local = tr.astimezone(tz)
        # entries around the transition's wall time (inside a gap or an overlap) and far from it
        probes = sorted(
            {
                (datetime.combine(date(2000, 1, 2), local.time()) + timedelta(minutes=m)).time().replace(microsecond=0)
                for m in (-90, -45, -30, -1, 0, 1, 15, 30, 59, 61)
            }
            | {time(12, 0)}
        )
        check_days(zone, probes, local.date() - timedelta(days=2), 5)


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    day=st.dates(min_value=date(2026, 1, 1), max_value=date(2031, 12, 31)),
    times=st.lists(st.times(), min_size=1, max_size=4, unique_by=lambda t: t.replace(microsecond=0)),
)
def test_random_days_and_entries(zone, day, times):
    times = sorted({t.replace(microsecond=0) for t in times})
    check_days(zone, times, day, 3)
