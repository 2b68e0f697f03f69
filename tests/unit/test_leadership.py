"""One control plane runs the loops: the lease's decisions (pure), the lease in a real
SQLite store shared by candidates with their own clocks, nudges from a standby, and the
reconciler fenced by the lease (the in-memory Ray counts the PUTs)."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from rota.crypto import Cipher
from rota.domain.leadership import Candidate, Lease, Step
from rota.services.fires import process_due
from rota.services.leadership import Deposed, Leadership
from rota.store.db import Database
from rota.store.leader_tables import LeaseRow, NudgeRow
from rota.store.tables import EndpointRow, EventRow

from .test_fires_and_reconciler import make


class Clock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


# ---------------------------------------------------------------- pure


def test_a_candidate_creates_renews_and_acts_a_renewal_short_of_the_lease():
    c = Candidate("a", lease_s=15, renew_s=5)
    assert c.next(None, 0.0) is Step.CREATE and not c.leading(0.0)
    c.held(1, began=0.0)
    assert c.leading(9.9) and not c.leading(10.0)  # stops a renewal interval before anyone may take over
    assert c.next(Lease("a", 1, 0), 5.0) is Step.RENEW
    c.held(1, began=5.0)
    assert c.leading(14.9)


def test_a_leader_knows_how_long_it_may_still_act():
    c = Candidate("a", lease_s=15, renew_s=5)
    assert c.left(0.0) == 0.0
    c.held(1, began=0.0)
    assert c.left(3.0) == 7.0 and c.left(10.0) == 0.0
    alone = Candidate("a", 15, 5, alone=True)
    alone.held(1, began=0.0)
    assert alone.left(1e6) == float("inf")  # nobody else can take it


def test_a_standby_takes_over_only_after_a_whole_lease_unchanged_on_its_own_clock():
    b = Candidate("b", lease_s=15, renew_s=5)
    assert b.next(Lease("a", 3, 7), 1000.0) is Step.WAIT
    assert b.next(Lease("a", 3, 7), 1014.9) is Step.WAIT
    assert b.next(Lease("a", 3, 8), 1014.9) is Step.WAIT  # renewed: the count starts again
    assert b.next(Lease("a", 3, 8), 1029.8) is Step.WAIT
    assert b.next(Lease("a", 3, 8), 1029.9) is Step.TAKE
    assert b.next(Lease(None, 3, 9), 0.0) is Step.TAKE  # let go: at once
    assert Candidate("c", 15, 5, alone=True).next(Lease("a", 3, 8), 0.0) is Step.TAKE  # nobody else can run here


def test_a_leader_that_sees_another_holder_stops_at_once():
    a = Candidate("a", lease_s=15, renew_s=5)
    a.held(1, began=0.0)
    assert a.next(Lease("b", 2, 0), 1.0) is Step.WAIT and not a.leading(1.0) and a.epoch is None


def test_the_renewal_must_be_shorter_than_the_lease():
    with pytest.raises(ValueError, match="shorter than the lease"):
        Candidate("a", lease_s=5, renew_s=5)


# ---------------------------------------------------------------- in the store


@pytest.fixture
def store(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'rota.db'}")
    db.migrate(Cipher.load(None, tmp_path / "secret_key"))
    yield db
    db.dispose()


def candidate(db, me, clock):
    return Leadership(db, me, lease_s=15, renew_s=5, clock=clock)


def lease(db):
    with db.session() as s:
        row = s.get(LeaseRow, "control")
        return row.holder, row.epoch


def test_a_lapsed_lease_is_taken_over_and_its_old_holder_is_fenced(store):
    ca, cb = Clock(), Clock(5000.0)  # the clocks of two processes need not agree
    a, b = candidate(store, "a", ca), candidate(store, "b", cb)
    assert a.acquire() and not b.acquire() and lease(store) == ("a", 1)
    ca.t += 5
    assert a.acquire()  # renewed
    cb.t += 14
    assert not b.acquire()  # it saw the renewal: it counts from there
    cb.t += 15
    assert b.acquire() and lease(store) == ("b", 2) and b.view()["since"] is not None
    assert a.leading  # a (paused, say) has not looked yet: what it records is fenced
    with pytest.raises(Deposed), store.session() as s:
        a.fence(s, 1)
    assert not a.leading and not a.acquire()
    with store.session() as s:
        b.fence(s, 2)  # the holder passes
    with pytest.raises(Deposed), store.session() as s:
        b.fence(s, 1)  # not under an epoch a tick began before it held this one
    assert b.leading


class Away:
    def session(self):
        raise ConnectionError("the store is away")


def test_a_leader_that_cannot_renew_stops_before_anyone_may_take_over(store):
    ca = Clock()
    a = candidate(store, "a", ca)
    assert a.acquire()
    a.db = Away()
    ca.t += 5
    assert a.acquire()  # the renewal failed (logged): it is still inside its lease
    ca.t += 4.9
    assert a.leading
    ca.t += 0.1
    assert not a.leading  # 10 s after its last renewal began; a standby takes over 15 s after it saw it


def test_stopping_lets_the_lease_go_and_a_standby_takes_it_at_once(store):
    a, b = candidate(store, "a", Clock()), candidate(store, "b", Clock())
    calls = []
    a.start(elected=lambda: calls.append("a elected"), deposed=lambda: calls.append("a deposed"), nudged=lambda ids: None)
    assert calls == ["a elected"] and not b.acquire()
    a.stop()
    assert calls == ["a elected", "a deposed"] and lease(store) == (None, 1)
    assert b.acquire() and lease(store) == ("b", 2)


def test_a_standby_nudges_the_leader_through_the_store(store):
    ca = Clock()
    a, b = candidate(store, "a", ca), candidate(store, "b", Clock())
    seen = []
    assert a.acquire()
    a._nudged = seen.append
    b.nudge(7)
    b.nudge(None)
    b.nudge(3)
    a._poll_nudges()
    a._work.submit(lambda: None).result()  # the nudges run on its work thread
    assert seen == [[3, 7]]
    a._poll_nudges()
    a._work.submit(lambda: None).result()
    assert seen == [[3, 7]]  # each once: consumed as read
    with store.session() as s:
        assert s.scalars(select(NudgeRow)).all() == []
    b.nudge(9)  # one committed after a read is read the next time
    a._poll_nudges()
    a._work.submit(lambda: None).result()
    assert seen == [[3, 7], [9]]


# ---------------------------------------------------------------- the reconciler, fenced


def test_a_deposed_reconciler_puts_nothing_more_and_records_nothing(rt, admin, ray, reconciler, clock, db):
    t = rt.tasks.activate(admin, make(rt, admin).id)
    clock.now = t.next_fire_at
    process_due(db, t.id, clock.now, "schedule", timedelta(hours=1))
    other = Leadership(db, "another process", alone=True)  # takes over while this one is paused
    assert other.acquire()
    with db.session() as s:
        events = len(s.scalars(select(EventRow)).all())
    puts = ray.puts
    with pytest.raises(Deposed):
        reconciler.tick()  # it had not looked at the lease yet: its PUT goes, its record is refused
    assert ray.puts == puts + 1
    with db.session() as s:
        ep = s.scalar(select(EndpointRow).where(EndpointRow.name == "t1"))
        assert (ep.applied_min, ep.status) == (None, "PENDING") and len(s.scalars(select(EventRow)).all()) == events
    assert not rt.leadership.leading
    reconciler.tick()
    assert ray.puts == puts + 1  # deposed: no PUT after the new leader's


def test_a_put_waits_no_longer_than_the_leader_may_act_and_none_goes_at_the_end(rt, admin, ray, reconciler, db):
    rt.leadership.stop()  # the embedded one lets the lease go; one that shares its store takes it
    mono = Clock()
    lead = candidate(db, "this one", mono)
    assert lead.acquire()
    reconciler.leadership = lead
    t = rt.tasks.activate(admin, make(rt, admin).id)
    process_due(db, t.id, t.next_fire_at, "schedule", timedelta(hours=1))
    mono.t += 6  # 4 s left of the 10 s it may act after its renewal began
    reconciler.tick()
    assert ray.puts == 1 and ray.waits == [pytest.approx(4.0)] and ray.by == ["this one; epoch 2"]
    ray.apps.clear()  # something to PUT again
    mono.t += 3.6  # 0.4 s left: too little for Ray to answer
    reconciler.tick()
    assert ray.puts == 1
    assert lead.acquire()  # renewed: 10 s to act again
    reconciler.tick()
    assert ray.puts == 2 and ray.waits[-1] == pytest.approx(10.0)


def test_a_put_ray_took_but_answered_too_late_is_recorded_as_applied(rt, admin, ray, reconciler, db):
    t = rt.tasks.activate(admin, make(rt, admin).id)
    process_due(db, t.id, t.next_fire_at, "schedule", timedelta(hours=1))
    ray.answer_late = True
    reconciler.tick()  # timed out: Ray is asked what it runs, and it runs what was sent
    with db.session() as s:
        ep = s.scalar(select(EndpointRow).where(EndpointRow.name == "t1"))
        kinds = [e.kind for e in s.scalars(select(EventRow).where(EventRow.endpoint_id == ep.id))]
        assert ep.applied_min is not None and "deploying" in kinds
    assert reconciler.ray_reachable is True and ray.puts == 1
    reconciler.tick()
    assert ray.puts == 1  # nothing left to send


def test_a_standby_runtime_leaves_its_changes_to_the_leader_and_sends_nothing(rt, admin, db):
    other = Leadership(db, "the leader", alone=True)
    rt.leadership.candidate.alone = False  # as on PostgreSQL: it waits for the lease to lapse
    assert other.acquire() and not rt.leadership.acquire()  # this runtime is a standby now
    t = make(rt, admin)
    rt.tasks.activate(admin, t.id)
    with db.session() as s:
        nudged = s.scalars(select(NudgeRow.task_id)).all()
    assert nudged == [t.id, t.id]  # created, activated: the leader looks at the task
    seen = []
    other._nudged = seen.append
    other._poll_nudges()
    other._work.submit(lambda: None).result()
    assert seen == [[t.id]]
    assert rt.dispatcher.tick() == ([], [])  # the leader's dispatcher sends


def test_a_failed_start_of_the_loops_is_undone_and_tried_again(store):
    a = candidate(store, "a", Clock())
    calls = []

    def elected():
        calls.append("elected")
        if calls.count("elected") == 1:
            raise ConnectionError("the store went away during the catch-up")

    a.start(elected=elected, deposed=lambda: calls.append("deposed"), nudged=lambda ids: None)
    assert calls[:2] == ["elected", "deposed"]  # what had started is stopped
    a._transition().result()
    assert calls == ["elected", "deposed", "elected"]  # and tried again: it leads, with its loops
    a.stop()
    assert calls[-1] == "deposed" and lease(store) == (None, 1)


def test_the_scheduler_acts_only_while_it_leads(rt, admin, clock, db):
    t = rt.tasks.activate(admin, make(rt, admin).id)
    sched = rt.scheduler
    sched.start()
    try:
        sched.lead()
        assert sched._aps.get_job(f"task-{t.id}") and sched._aps.get_job("sweep")
        sched.follow()
        sched.sync(t.id)  # a change seen while another process leads schedules nothing here
        assert sched._aps.get_jobs() == []
        sched.leading, sched.may_act = True, lambda: False  # its lease lapsed; follow() has not run yet
        clock.now = t.next_fire_at
        sched._fire(t.id)
        assert sched.catch_up(trigger="catch_up") == 0
        with db.session() as s:
            assert s.scalars(select(EventRow).where(EventRow.kind.in_(["fired", "caught_up"]))).all() == []
    finally:
        sched.shutdown()
