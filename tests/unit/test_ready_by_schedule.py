"""ready_by: the early instant (across DST, entries closer than the cold start), measured
cold starts and the readiness of a window. Pure functions, instants computed by hand."""

from datetime import date, datetime, timedelta, timezone

import pytest

from rota.domain.coldstart import Change, ColdStartStats, early_note, measure, percentile, stats
from rota.domain.readiness import LATE, NEVER, ON_TIME, PENDING, READY_LATE, step
from rota.domain.schedule import ScheduleSpec, next_occurrences, occurrences, plan_catch_up

UTC = timezone.utc


def utc(*a):
    return datetime(*a, tzinfo=UTC)


def spec(entries, tz="UTC", lead_min=10, ready_by=False, type_="daily"):
    return ScheduleSpec.build(type_, tz, entries, ready_by, timedelta(minutes=lead_min))


def fires(sp, after, n):
    return [(o.at, o.ready_by, o.entry.index, o.merged) for o in next_occurrences(sp, after, n)]


def e(t, lo, hi=None, ready=None):
    out = {"time": t, "min_replicas": lo, "max_replicas": hi or max(lo, 1)}
    if ready is not None:
        out["ready_by"] = ready
    return out


def test_a_scale_up_fires_early_by_the_lead_and_a_scale_down_at_its_written_time():
    sp = spec([e("08:00", 2, ready=True), e("18:00", 0, ready=True)])
    got = fires(sp, utc(2026, 11, 23, 0, 0), 3)
    assert got == [
        (utc(2026, 11, 23, 7, 50), utc(2026, 11, 23, 8, 0), 0, ()),
        (utc(2026, 11, 23, 18, 0), None, 1, ()),  # ready_by on a scale-down: never early
        (utc(2026, 11, 24, 7, 50), utc(2026, 11, 24, 8, 0), 0, ()),
    ]
    # Without ready_by (or with no lead) nothing moves.
    assert fires(spec([e("08:00", 2), e("18:00", 0)]), utc(2026, 11, 23), 1)[0][:2] == (utc(2026, 11, 23, 8), None)
    assert fires(spec([e("08:00", 2, ready=True)], lead_min=0), utc(2026, 11, 23), 1)[0][:2] == (utc(2026, 11, 23, 8), None)


def test_the_task_default_applies_to_entries_that_do_not_say():
    sp = spec([e("08:00", 2), e("09:00", 4, ready=False), e("18:00", 0)], ready_by=True)
    got = fires(sp, utc(2026, 11, 23), 3)
    assert [(g[0], g[1]) for g in got] == [
        (utc(2026, 11, 23, 7, 50), utc(2026, 11, 23, 8)),
        (utc(2026, 11, 23, 9), None),  # it said ready_by: false
        (utc(2026, 11, 23, 18), None),
    ]


def test_an_early_fire_never_lands_before_the_previous_entry():
    # 08:00 scales to zero, 08:05 needs 2 ready: a 10 min lead would start at 07:55, before
    # 08:00; it starts at 08:00 instead and the two fire once, with the later entry's bounds.
    sp = spec([e("06:00", 1), e("08:00", 0), e("08:05", 2, ready=True)])
    got = fires(sp, utc(2026, 11, 23, 7), 2)
    assert got[0] == (utc(2026, 11, 23, 8, 0), utc(2026, 11, 23, 8, 5), 2, ((date(2026, 11, 23), 1),))
    # Two scale-ups 5 minutes apart with a 10 minute lead: each early, in order.
    sp = spec([e("07:00", 0), e("08:00", 1, ready=True), e("08:05", 3, ready=True)])
    got = fires(sp, utc(2026, 11, 23, 7, 30), 2)
    assert [(g[0], g[1]) for g in got] == [
        (utc(2026, 11, 23, 7, 50), utc(2026, 11, 23, 8)),
        (utc(2026, 11, 23, 7, 55), utc(2026, 11, 23, 8, 5)),
    ]
    # A lead longer than the gap: the second waits for the first's fire (not before it).
    sp = spec([e("07:58", 0), e("08:00", 2, ready=True)], lead_min=30)
    assert fires(sp, utc(2026, 11, 23, 7), 1)[0][:3] == (utc(2026, 11, 23, 7, 58), utc(2026, 11, 23, 8), 1)
    # Across midnight: 00:05 (ready_by, 10 min lead) after a 23:59 scale-down fires with it.
    sp = spec([e("23:59", 0), e("00:05", 1, ready=True)])
    got = fires(sp, utc(2026, 11, 23, 12), 1)
    assert got[0][:3] == (utc(2026, 11, 23, 23, 59), utc(2026, 11, 24, 0, 5), 1)


def test_the_early_instant_across_dst_in_paris():
    # 2026-03-29: Paris jumps 02:00 -> 03:00 (UTC+1 -> UTC+2). 02:30 does not exist and
    # fires at 03:30 local (01:30 UTC); 20 minutes early is 01:10 UTC (03:10 local).
    sp = spec([e("00:00", 0), e("02:30", 2, ready=True)], tz="Europe/Paris", lead_min=20)
    got = fires(sp, utc(2026, 3, 28, 23, 30), 1)
    assert got[0][:2] == (utc(2026, 3, 29, 1, 10), utc(2026, 3, 29, 1, 30))
    # 03:10 exists (01:10 UTC); 20 minutes early is 00:50 UTC, 01:50 local in winter time.
    sp = spec([e("00:00", 0), e("03:10", 2, ready=True)], tz="Europe/Paris", lead_min=20)
    assert fires(sp, utc(2026, 3, 28, 23, 30), 1)[0][:2] == (utc(2026, 3, 29, 0, 50), utc(2026, 3, 29, 1, 10))
    # 2026-10-25: 02:30 happens twice and fires at its first occurrence (00:30 UTC); early:
    # 00:10 UTC. The next day's (01:30 UTC) is early by the same 20 minutes.
    sp = spec([e("00:00", 0), e("02:30", 2, ready=True)], tz="Europe/Paris", lead_min=20)
    got = fires(sp, utc(2026, 10, 24, 23, 0), 3)
    assert [g[:2] for g in got] == [
        (utc(2026, 10, 25, 0, 10), utc(2026, 10, 25, 0, 30)),
        (utc(2026, 10, 25, 23, 0), None),
        (utc(2026, 10, 26, 1, 10), utc(2026, 10, 26, 1, 30)),
    ]


def test_fires_are_known_by_their_written_instant():
    sp = spec([e("08:00", 2, ready=True), e("18:00", 0)])
    # After 07:55 (between the early fire and the written time) the 08:00 entry is still
    # to come: it is known by 08:00, and due already.
    nxt = next(occurrences(sp, utc(2026, 11, 23, 7, 55)))
    assert (nxt.at, nxt.written) == (utc(2026, 11, 23, 7, 50), utc(2026, 11, 23, 8))
    # Catch-up over (since, now]: written after since, fired by now. A longer lead later
    # never brings back a fire written at or before since.
    due = plan_catch_up(sp, utc(2026, 11, 23, 7), utc(2026, 11, 23, 7, 51), timedelta(hours=1))
    assert due.apply is not None and due.apply.written == utc(2026, 11, 23, 8)
    # Applied at 07:50 for 08:00; the lead then shrinks to 5 minutes (fire 07:55). Counted
    # from the written instant (08:00) nothing is due again; counted from the fire instant
    # (07:50) it would fire twice.
    shorter = ScheduleSpec(sp.type, sp.timezone, sp.entries, timedelta(minutes=5))
    assert plan_catch_up(shorter, utc(2026, 11, 23, 8), utc(2026, 11, 23, 7, 56), timedelta(hours=1)).apply is None
    assert plan_catch_up(shorter, utc(2026, 11, 23, 7, 50), utc(2026, 11, 23, 7, 56), timedelta(hours=1)).apply is not None


def test_a_one_off_ready_by_fires_early_and_keeps_its_grace():
    sp = spec([e("2026-11-23T09:00", 2, ready=True)], type_="one_off")
    (o,) = list(occurrences(sp, utc(2026, 11, 23)))
    assert (o.at, o.ready_by) == (utc(2026, 11, 23, 8, 50), utc(2026, 11, 23, 9))
    late = plan_catch_up(sp, utc(2026, 11, 23), utc(2026, 11, 23, 10, 0), timedelta(hours=1))
    assert late.missed is not None  # 70 minutes after the early instant: past the grace
    ok = plan_catch_up(sp, utc(2026, 11, 23), utc(2026, 11, 23, 9, 40), timedelta(hours=1))
    assert ok.apply is not None
    # Activated at 08:55, inside its lead (it should have started at 08:50): it starts now,
    # its grace counted from the activation, not from the early instant it never had.
    now = utc(2026, 11, 23, 8, 55, 30)
    assert plan_catch_up(sp, utc(2026, 11, 23, 8, 55), now, timedelta(seconds=60)).apply is not None
    # The earliest history a projection asks for (a one-off's "since the beginning") works too.
    assert list(occurrences(sp, datetime.min.replace(tzinfo=UTC)))[0].written == utc(2026, 11, 23, 9)


T0 = utc(2026, 11, 23, 8)


def at(s):
    return T0 + timedelta(seconds=s)


def test_a_cold_start_is_measured_from_an_idle_status_to_running_with_its_phases():
    changes = [
        Change(at(-100), "RUNNING", "READY"),
        Change(at(-50), "SLEEPING"),
        Change(at(0), "AWAKING", "REQUESTING_RESOURCES"),
        Change(at(4), "AWAKING", "ENGINE_INITIALIZING"),
        Change(at(19), "AWAKING", "WAITING_FOR_ROUTE"),
        Change(at(21), "RUNNING", "READY"),
    ]
    c = measure(changes)
    assert c is not None and c.seconds == 21 and c.kind == "wake"
    assert c.phases == {"REQUESTING_RESOURCES": 4, "ENGINE_INITIALIZING": 15, "WAITING_FOR_ROUTE": 2}
    # A roll while serving, a start whose beginning is out of view, a failed start: none.
    assert measure([Change(at(0), "RUNNING"), Change(at(1), "UPDATING"), Change(at(9), "RUNNING")]) is None
    assert measure([Change(at(0), "INITIALIZING"), Change(at(9), "RUNNING")]) is None
    assert measure([Change(at(0), "PENDING"), Change(at(1), "INITIALIZING"), Change(at(5), "FAILED")]) is None
    deploy = measure([Change(at(0), "PENDING"), Change(at(1), "INITIALIZING"), Change(at(9), "RUNNING")])
    assert (deploy.seconds, deploy.kind) == (8, "deploy")
    assert measure([Change(at(1), "INITIALIZING"), Change(at(9), "RUNNING")], since_created=True).seconds == 8


def test_figures_are_nearest_rank_percentiles_and_the_lead_adds_the_margin():
    assert percentile([5, 1, 3, 2, 4], 50) == 3 and percentile([5, 1, 3, 2, 4], 95) == 5
    starts = [
        measure([Change(at(0), "PENDING"), Change(at(1), "INITIALIZING"), Change(at(1 + s), "RUNNING")]) for s in range(10, 30)
    ]
    f = stats(starts, "measured", 0.0, 12.0)
    # 20 starts of 10..29 s: p50 is the 10th (19 s), p95 the 19th (28 s).
    assert (f.count, f.p50_s, f.p95_s, f.lead_s) == (20, 19.0, 28.0, 40.0)
    assert f.phases["INITIALIZING"].p95_s == 28.0
    assert stats([], "template", 180.0, 30.0).lead_s == 210.0
    # Wakes (what a schedule's scale-up is) are the figures once there is one; the window
    # is the last 20 of them.
    wake = measure([Change(at(0), "SLEEPING"), Change(at(1), "AWAKING"), Change(at(6), "RUNNING")])
    f = stats([*starts, wake], "measured", 0.0, 1.0)
    assert (f.count, f.p95_s, f.kind, f.lead_s) == (1, 5.0, "wake", 6.0)
    assert stats(starts, "measured", 0.0, 0.0, window=5).p50_s == 27.0  # 25..29 s
    # A start stuck for hours does not make the lead keep an endpoint up all night.
    stuck = measure([Change(at(0), "SLEEPING"), Change(at(1), "AWAKING"), Change(at(7201), "RUNNING")])
    assert stats([stuck], "measured", 0.0, 30.0, max_lead_s=3600).lead_s == 3600
    # A roll while asleep (UPDATING) deploys: it is not a wake.
    assert measure([Change(at(0), "SLEEPING"), Change(at(1), "UPDATING"), Change(at(9), "RUNNING")]).kind == "deploy"


def test_the_note_says_both_instants_and_what_the_lead_comes_from():
    f = ColdStartStats(count=12, p50_s=400, p95_s=440, source="measured", lead_s=470)
    starts, ready = datetime(2026, 11, 23, 7, 52, 10), datetime(2026, 11, 23, 8, 0)
    assert early_note(starts, ready, 2, "Europe/Paris", f) == (
        "starts 07:52:10 so that 2 replicas are ready by 08:00 Europe/Paris; p95 cold start 7 m 20 s over 12 starts + 30 s margin"
    )
    est = ColdStartStats(count=0, source="template", lead_s=210)
    assert early_note(starts, ready, 1, "UTC", est) == (
        "starts 07:52:10 so that 1 replica is ready by 08:00 UTC; its template estimate 3 m 30 s (no start measured yet)"
    )


@pytest.mark.parametrize(
    "state, ready_at, now_s, serving, moved_on, want",
    [
        (PENDING, None, -30, 2, False, (PENDING, -30, False)),  # serving before the written time: noted
        (PENDING, -30, 0, 2, False, (ON_TIME, -30, True)),  # the written time: on time
        (PENDING, None, 0, 1, False, (LATE, None, True)),  # 1 of 2 at the written time: late
        (LATE, None, 40, 2, False, (READY_LATE, 40, True)),  # then ready, 40 s late
        (LATE, None, 600, 0, True, (NEVER, None, True)),  # the next entry's time passed first
        (PENDING, None, 0, 2, False, (ON_TIME, 0, True)),  # serving exactly at the written time
    ],
)
def test_a_window_is_judged_at_its_written_time(state, ready_at, now_s, serving, moved_on, want):
    w = step(state, at(ready_at) if ready_at is not None else None, T0, 2, serving, at(now_s), moved_on)
    assert (w.state, w.ready_at, w.changed) == (want[0], at(want[1]) if want[1] is not None else None, want[2])
