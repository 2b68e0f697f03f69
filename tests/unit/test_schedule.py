"""Schedule math with explicit instants (no wall clock)."""

from datetime import datetime, time, timedelta

import pytest
import pytz

from rota.domain.schedule import (
    ScheduleSpec,
    next_occurrence,
    next_occurrences,
    occurrences,
    parse_local_datetime,
    parse_time_of_day,
    plan_catch_up,
    to_utc,
)

UTC = pytz.utc


def daily(tz, *entries):
    return ScheduleSpec.build("daily", tz, [{"time": t, "min_replicas": lo, "max_replicas": hi} for t, lo, hi in entries])


def one_off(tz, when, lo=1, hi=1):
    return ScheduleSpec.build("one_off", tz, [{"time": when, "min_replicas": lo, "max_replicas": hi}])


def at(*a):
    return datetime(*a, tzinfo=UTC)


@pytest.mark.parametrize("text,expected", [("09:00", time(9)), ("23:59:30", time(23, 59, 30)), ("00:00", time(0))])
def test_parse_time_of_day(text, expected):
    assert parse_time_of_day(text) == expected


@pytest.mark.parametrize("text", ["9:00", "24:00", "12:60", "noon", "2026-11-23T09:30", ""])
def test_parse_time_of_day_rejects(text):
    with pytest.raises(ValueError):
        parse_time_of_day(text)


def test_parse_local_datetime_rejects_time_only_with_hint():
    with pytest.raises(ValueError, match="has no date"):
        parse_local_datetime("09:30")
    with pytest.raises(ValueError, match="not a valid date-time"):
        parse_local_datetime("2026-02-30T09:30")
    assert parse_local_datetime("2026-11-23T09:30") == datetime(2026, 11, 23, 9, 30)


def test_daily_next_fire_in_zone():
    spec = daily("Europe/Paris", ("09:00", 1, 1), ("18:00", 3, 3))
    # 2026-11-23 is winter time in Paris: UTC+1
    occ = next_occurrence(spec, at(2026, 11, 23, 7, 0))
    assert occ.at == at(2026, 11, 23, 8, 0) and occ.entry.index == 0
    occ = next_occurrence(spec, occ.at)
    assert occ.at == at(2026, 11, 23, 17, 0) and occ.entry.index == 1
    assert next_occurrence(spec, occ.at).at == at(2026, 11, 24, 8, 0)


def test_entries_are_fired_in_time_order_whatever_their_list_order():
    spec = daily("UTC", ("18:00", 3, 3), ("09:00", 1, 1))
    got = [(o.at.hour, o.entry.index) for o in next_occurrences(spec, at(2026, 1, 1), 4)]
    assert got == [(9, 1), (18, 0), (9, 1), (18, 0)]


def test_one_off_fires_once_then_never():
    spec = one_off("Asia/Tokyo", "2026-11-23T09:30")
    occ = next_occurrence(spec, at(2026, 1, 1))
    assert occ.at == at(2026, 11, 23, 0, 30)
    assert next_occurrence(spec, occ.at) is None


def test_spring_forward_shifts_by_the_gap():
    spec = daily("America/New_York", ("02:30", 1, 1))
    occ = next_occurrence(spec, at(2026, 3, 8, 0, 0))
    local = occ.at.astimezone(spec.tz)
    assert (local.hour, local.minute, local.date().day) == (3, 30, 8)


def test_fall_back_fires_at_first_occurrence_once():
    spec = daily("America/New_York", ("01:30", 1, 1))
    occs = list(occurrences(spec, at(2026, 10, 31, 12), at(2026, 11, 2, 12)))
    assert [o.local_date.day for o in occs] == [1, 2]
    assert occs[0].at == at(2026, 11, 1, 5, 30)  # 01:30 EDT, the first of the two


def test_colliding_entries_fire_once_with_later_entry_bounds():
    spec = daily("America/New_York", ("02:30", 1, 1), ("03:30", 5, 5))
    day = [o for o in occurrences(spec, at(2026, 3, 8, 0), at(2026, 3, 9, 0))]
    assert len(day) == 1
    assert day[0].entry.index == 1 and day[0].merged == ((day[0].local_date, 0),)


def test_to_utc_normal_and_gap_and_overlap():
    tz = pytz.timezone("Europe/Berlin")
    assert to_utc(tz, datetime(2026, 7, 1, 12)) == at(2026, 7, 1, 10)
    assert to_utc(tz, datetime(2026, 3, 29, 2, 15)) == at(2026, 3, 29, 1, 15)  # 03:15 CEST
    assert to_utc(tz, datetime(2026, 10, 25, 2, 15)) == at(2026, 10, 25, 0, 15)  # first 02:15 (CEST)


def test_catch_up_daily_applies_latest_due_once():
    spec = daily("UTC", ("09:00", 1, 1), ("12:00", 2, 2), ("18:00", 3, 3))
    plan = plan_catch_up(spec, since=at(2026, 5, 1, 8), now=at(2026, 5, 1, 13), grace=timedelta(hours=1))
    assert plan.apply.entry.index == 1 and plan.apply.at == at(2026, 5, 1, 12)
    assert plan.skipped == 1 and plan.missed is None


def test_catch_up_nothing_due():
    spec = daily("UTC", ("09:00", 1, 1))
    plan = plan_catch_up(spec, since=at(2026, 5, 1, 9, 30), now=at(2026, 5, 1, 13), grace=timedelta(hours=1))
    assert plan.apply is None and plan.missed is None


def test_catch_up_one_off_within_grace_fires():
    spec = one_off("UTC", "2026-05-01T12:00")
    plan = plan_catch_up(spec, since=at(2026, 5, 1), now=at(2026, 5, 1, 12, 59), grace=timedelta(hours=1))
    assert plan.apply is not None and plan.missed is None


def test_catch_up_one_off_past_grace_is_missed():
    spec = one_off("UTC", "2026-05-01T12:00")
    plan = plan_catch_up(spec, since=at(2026, 5, 1), now=at(2026, 5, 1, 13, 1), grace=timedelta(hours=1))
    assert plan.apply is None and plan.missed.at == at(2026, 5, 1, 12)
