"""One APScheduler date job per schedulable task, rebuilt from the database when this process leads.

Jobs carry no state of their own: a job only says "look at task N now". What is due is
decided from the database by ``rota.services.fires.process_due``, which also serves the
catch-up after a restart and a periodic sweep that repairs anything a lost job missed.
APScheduler's own next-fire arithmetic is not used (it has had DST bugs): Rota computes
every fire instant itself (``rota.domain.schedule``) and hands APScheduler a UTC date.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select

from rota.services.coldstarts import ReadyBy
from rota.services.fires import SCHEDULABLE, FireResult, process_due
from rota.store.db import Database
from rota.store.tables import TaskRow, utcnow

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        db: Database,
        grace: timedelta,
        on_fire: Callable[[], None],
        sweep_interval_s: float = 15.0,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.db = db
        self.grace = grace
        self.on_fire = on_fire
        self.clock = clock
        self.sweep_interval_s = sweep_interval_s
        # Enough threads that a burst of fires waiting on the store's write lock never
        # delays the dispatch of the next one.
        self._aps = BackgroundScheduler(timezone="UTC", executors={"default": ThreadPoolExecutor(16)})
        self.last_catch_up_s: float | None = None
        self.observe: Callable[[FireResult, datetime, str], None] = lambda result, now, trigger: None  # metrics
        self.ready = ReadyBy()  # how early ready_by entries fire (the runtime sets the configured one)
        self.leading = False  # jobs run here (``lead``); a job left over from before ``follow`` does nothing
        self.may_act: Callable[[], bool] = lambda: True  # the lease, on its own clock: nothing runs past it
        self._housekeeping: dict[str, tuple[float, Callable[[], None]]] = {}

    def start(self) -> None:
        """Run APScheduler; jobs come with ``lead`` (several control planes: on one only)."""
        self._aps.start()

    def lead(self) -> None:
        """Catch up on what fell due while no scheduler ran, then schedule every task, the
        sweep and the housekeeping jobs."""
        self.leading = True
        t0 = time.monotonic()
        self.catch_up(trigger="catch_up")
        self.last_catch_up_s = time.monotonic() - t0
        log.info("catch-up took %.3fs", self.last_catch_up_s)
        self._aps.add_job(
            self._sweep,
            IntervalTrigger(seconds=self.sweep_interval_s),
            id="sweep",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
            replace_existing=True,
        )
        for name, (seconds, run) in self._housekeeping.items():
            self._aps.add_job(
                run, IntervalTrigger(seconds=seconds), id=name, coalesce=True, max_instances=1, replace_existing=True
            )

    def follow(self) -> None:
        """Another control plane leads: no job runs here (a fire already running ends as it
        would; the store keeps it exactly once)."""
        self.leading = False
        self._aps.remove_all_jobs()

    def every(self, name: str, seconds: float, job: Callable[[], object]) -> None:
        """A housekeeping job (e.g. pruning request logs) every ``seconds`` while this
        process leads; it logs its failures."""

        def run() -> None:
            if not self._acting():
                return
            try:
                job()
            except Exception:
                log.exception("%s failed; it runs again in %ss", name, seconds)

        self._housekeeping[name] = (seconds, run)
        if self.leading:
            self._aps.add_job(
                run, IntervalTrigger(seconds=seconds), id=name, coalesce=True, max_instances=1, replace_existing=True
            )

    def shutdown(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)

    def catch_up(self, trigger: str, older_than: timedelta = timedelta(0)) -> int:
        """Process every schedulable task whose next fire is due; (re)schedule all of them."""
        now = self.clock()
        with self.db.session() as s:
            columns = (TaskRow.id, TaskRow.next_fire_at, TaskRow.ready_by, TaskRow.schedule)
            rows = s.execute(select(*columns).where(TaskRow.status.in_(SCHEDULABLE))).all()
        applied = 0
        for task_id, next_at, ready_by, schedule in rows:
            if not self._acting():  # the lease was lost meanwhile: the next leader catches up
                break
            try:
                if next_at is None or next_at <= now - older_than:
                    applied += self._due(task_id, now, trigger).applied is not None
                elif ready_by or any(e.get("ready_by") for e in schedule):
                    # Its lead follows the cold starts measured since: plan its next fire again.
                    applied += self._due(task_id, now, "schedule").applied is not None
                self.sync(task_id)
            except Exception:
                log.exception("catch-up of task %s failed; the sweep will retry", task_id)
        if applied:
            self.on_fire()
        return applied

    def _sweep(self) -> None:
        # A job can only be lost by a bug or a clock jump; fires older than a few
        # seconds with no job having applied them are caught up here.
        if not self._acting():
            return
        try:
            self.catch_up(trigger="catch_up", older_than=timedelta(seconds=5))
        except Exception:
            log.exception("sweep failed")

    def sync(self, task_id: int) -> None:
        """Make the task's job match the database: one date job at its next fire, or none."""
        if not self.leading:
            return
        with self.db.session() as s:
            task = s.get(TaskRow, task_id)
            when = task.next_fire_at if task is not None and task.status in SCHEDULABLE else None
        job_id = f"task-{task_id}"
        if when is None:
            with contextlib.suppress(JobLookupError):
                self._aps.remove_job(job_id)
            return
        self._aps.add_job(
            self._fire,
            DateTrigger(run_date=when),
            args=[task_id],
            id=job_id,
            replace_existing=True,
            misfire_grace_time=None,
            coalesce=True,
        )

    def _due(self, task_id: int, now: datetime, trigger: str) -> FireResult:
        result = process_due(self.db, task_id, now, trigger, self.grace, self.ready)
        self.observe(result, now, trigger)
        return result

    def _acting(self) -> bool:
        return self.leading and self.may_act()

    def _fire(self, task_id: int) -> None:
        if not self._acting():
            return
        try:
            result = self._due(task_id, self.clock(), "schedule")
            if result.applied is not None:
                self.on_fire()
        except Exception:
            log.exception("fire of task %s failed; the sweep will retry", task_id)
        finally:
            try:
                self.sync(task_id)
            except Exception:
                log.exception("rescheduling task %s failed; the sweep will retry", task_id)
