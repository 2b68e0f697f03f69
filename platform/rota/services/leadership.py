"""One control plane runs the scheduler, the reconciler and the dispatcher; any number
serve the API.

Every ``rota server`` on one store is a candidate for the ``control`` lease (a row of the
store, ``rota.domain.leadership`` decides). The leader renews it every ``renew_s``; a
standby takes it over when it lapses and rebuilds its jobs from the store (``elected``),
and a leader that lost it stops its loops (``deposed``). Each loop also asks ``leading``
(or ``holds(epoch)``) before it acts, so none acts past the lease even while the
transition is on its way. The epoch is the fencing token: what the reconciler records is
checked against the epoch its tick began under, in the same transaction (``fence``). A
standby's API changes a task or an endpoint: it leaves a nudge in the store, which the
leader consumes within ``poll_s``.

The transitions and the nudges run on a thread of their own: a long catch-up never holds
a renewal back. What ``/healthz`` shows is the lease as this loop last read it: no store
call on a probe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from rota.domain.leadership import Candidate, Lease, Step
from rota.store.db import Database
from rota.store.leader_tables import LeaseRow, NudgeRow
from rota.store.tables import utcnow

log = logging.getLogger(__name__)

NAME = "control"


def identity() -> str:
    """This process among the candidates: its host, its pid, and a random part (a container's pid is often 1)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Deposed(Exception):
    """This process no longer holds the lease (or not the epoch a tick began under): what
    it was about to record is not recorded."""


class Leadership:
    def __init__(
        self,
        db: Database,
        me: str,
        lease_s: float = 15.0,
        renew_s: float = 5.0,
        poll_s: float = 0.5,
        alone: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.db, self.clock, self.poll_s = db, clock, poll_s
        self.candidate = Candidate(me, lease_s, renew_s, alone=alone)
        self.elections = 0  # times this process became the leader (metrics)
        self.seen: dict[str, Any] = {"leader": None, "epoch": None, "since": None}  # the lease as last read
        self._acting = False  # the loops run here (the transitions thread's view)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._work = ThreadPoolExecutor(1, thread_name_prefix="leadership")
        self._elected: Callable[[], None] = lambda: None
        self._deposed: Callable[[], None] = lambda: None
        self._nudged: Callable[[list[int]], None] = lambda task_ids: None

    @property
    def me(self) -> str:
        return self.candidate.me

    @property
    def leading(self) -> bool:
        return not self._stop.is_set() and self.candidate.leading(self.clock())

    @property
    def epoch(self) -> int | None:
        """The epoch this process acts under now (None: it does not lead)."""
        return self.candidate.epoch if self.leading else None

    def holds(self, epoch: int | None) -> bool:
        """Whether this process still leads under ``epoch`` (a tick's, taken when it began)."""
        return epoch is not None and self.epoch == epoch

    def left(self, epoch: int | None) -> float:
        """How long this process may still act under ``epoch`` (0: no longer)."""
        return self.candidate.left(self.clock()) if self.holds(epoch) else 0.0

    def signature(self, epoch: int | None) -> str:
        """Who acts under ``epoch``, as a PUT to Ray names it (its User-Agent)."""
        return f"{self.candidate.me}; epoch {epoch}"

    # ------------------------------------------------------------ loop
    def start(self, elected: Callable[[], None], deposed: Callable[[], None], nudged: Callable[[list[int]], None]) -> None:
        """Try once at once (a lone process starts leading before this returns, its
        catch-up done), then keep trying and renewing on a thread."""
        self._elected, self._deposed, self._nudged = elected, deposed, nudged
        self._stop.clear()
        self.acquire()
        self._transition().result()
        self._thread = threading.Thread(target=self._run, name="leadership", daemon=True)
        self._thread.start()

    def acquire(self) -> bool:
        """Read the lease once, and create, renew or take it if it may be: whether this
        process leads now (``start`` does this first; tests that drive the loops by hand too)."""
        try:
            self._step()
        except Exception:
            log.warning("the lease could not be read; trying again", exc_info=True)
        return self.leading

    def stop(self, loops_stopped: Callable[[], bool] = lambda: True) -> None:
        """Stop acting here, stop the loops, and let the lease go so that a standby takes
        over at once: unless ``loops_stopped`` says one still runs (a PUT that outlived its
        join), then the lease is left to lapse."""
        self._stop.set()  # ``leading`` is False from here on, and ``_step`` writes nothing more
        if self._thread:
            self._thread.join(timeout=10)
        was = self.candidate.epoch
        with contextlib.suppress(Exception):  # logged by _follow_leadership; a timeout leaves the lease to lapse
            self._transition().result(timeout=30)
        self._work.shutdown(wait=False)
        if was is None or not loops_stopped():
            return
        try:
            with self.db.session() as s:
                s.execute(
                    update(LeaseRow)
                    .where(LeaseRow.name == NAME, LeaseRow.holder == self.me, LeaseRow.epoch == was)
                    .values(holder=None, renewals=LeaseRow.renewals + 1, renewed_at=utcnow())
                )
        except Exception:
            log.warning("could not let the lease go; a standby takes over once it lapses", exc_info=True)

    def _run(self) -> None:
        """The leader renews every ``renew_s`` and consumes the nudges in between; a
        standby reads the lease every ``poll_s`` (a takeover comes at most ``poll_s`` after
        the lapse)."""
        renew_at = self.clock() + self.candidate.renew_s
        while not self._stop.wait(self.poll_s):
            try:
                if not self.leading or self.clock() >= renew_at:
                    began = self.clock()
                    self._step()
                    renew_at = began + self.candidate.renew_s
                elif not self.candidate.alone:  # alone, nobody else can leave one
                    self._poll_nudges()
            except Exception:
                log.warning("the lease could not be read or renewed; trying again", exc_info=True)
            self._transition()

    def _step(self) -> None:
        """Read the lease and create, renew, take it, or wait."""
        began = self.clock()  # a hold counts from before its write: the conservative end
        with self.db.session() as s:
            row = s.get(LeaseRow, NAME)
            lease = Lease(row.holder, row.epoch, row.renewals) if row else None
            if row:
                self.seen = {"leader": row.holder, "epoch": row.epoch, "since": row.since.isoformat() if row.holder else None}
            if self._stop.is_set():
                return
            # A standby counts from after its read: a slow read never shortens the lease.
            step = self.candidate.next(lease, self.clock())
            now = utcnow()
            if step is Step.CREATE:
                s.add(LeaseRow(name=NAME, holder=self.me, epoch=1, renewals=0, since=now, renewed_at=now))
                epoch = 1
            elif step is Step.WAIT:
                return
            else:
                assert lease is not None
                epoch = lease.epoch + (step is Step.TAKE)
                values: dict[str, Any] = {"renewals": LeaseRow.renewals + 1, "renewed_at": now}
                if step is Step.TAKE:
                    values.update(holder=self.me, epoch=epoch, since=now)
                done = s.execute(  # only if nobody changed it since it was read
                    update(LeaseRow)
                    .where(LeaseRow.name == NAME, LeaseRow.epoch == lease.epoch, LeaseRow.renewals == lease.renewals)
                    .values(**values)
                )
                if done.rowcount != 1:  # type: ignore[attr-defined]
                    self.candidate.lost()
                    return
        # committed (a CREATE racing another's raised a Conflict: this one waits, and reads again)
        self.candidate.held(epoch, began)
        if step is not Step.RENEW:
            log.info("this control plane leads now (epoch %d)", epoch)
            self.seen = {"leader": self.me, "epoch": epoch, "since": now.isoformat()}

    def _transition(self) -> Future[None]:
        """Start or stop the loops here when leadership changed (on the work thread)."""
        try:
            return self._work.submit(self._follow_leadership)
        except RuntimeError:  # stopped: nothing runs here any more
            done: Future[None] = Future()
            done.set_result(None)
            return done

    def _follow_leadership(self) -> None:
        leading = self.leading
        if leading == self._acting:
            return
        self._acting = leading
        if leading:
            self.elections += 1
            try:
                self._elected()
            except Exception:  # e.g. the store failed during the catch-up: stop what started, try again
                log.exception("starting the loops failed; trying again")
                self._acting = False
                self._safely(self._deposed)
        else:
            log.warning("this control plane no longer leads: its scheduler and reconciler stop")
            self._safely(self._deposed)

    @staticmethod
    def _safely(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("stopping the loops failed")

    # ------------------------------------------------------------ nudges
    def nudge(self, task_id: int | None) -> None:
        """A change made here while another process leads: it looks at it within
        ``poll_s``. The change is committed already: a failure here is logged (the
        leader's sweep looks at every task anyway)."""
        try:
            with self.db.session() as s:
                s.add(NudgeRow(task_id=task_id, at=utcnow()))
        except Exception:
            log.warning("could not nudge the leader; its sweep finds the change", exc_info=True)

    def _poll_nudges(self) -> None:
        """Consume every nudge there is (deleted as read: one committed late is read next
        time, never skipped)."""
        with self.db.session() as s:
            rows = s.execute(delete(NudgeRow).returning(NudgeRow.task_id)).all()
        if rows:
            task_ids = sorted({r.task_id for r in rows if r.task_id is not None})
            with contextlib.suppress(RuntimeError):  # stopped meanwhile
                self._work.submit(self._nudged, task_ids)

    # ------------------------------------------------------------ fencing and views
    def fence(self, s: Session, epoch: int | None) -> None:
        """In the transaction that records what a loop did under ``epoch``, last before its
        commit: Deposed unless this process still holds the lease at that epoch (the row
        stays locked until the commit: a takeover waits for it)."""
        row = s.execute(select(LeaseRow).where(LeaseRow.name == NAME).with_for_update()).scalar_one_or_none()
        if row is None or row.holder != self.me or row.epoch != epoch or epoch != self.candidate.epoch:
            if row is None or row.holder != self.me or row.epoch != self.candidate.epoch:
                self.candidate.lost()
                self._transition()
            raise Deposed(f"the lease is at epoch {row.epoch if row else '-'}, this tick began under {epoch}")

    def view(self) -> dict[str, Any]:
        """Who leads and since when, as this process last read the lease (no store call)."""
        return {"this_process": self.me, "leading": self.leading, **self.seen}
