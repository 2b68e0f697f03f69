"""One control plane runs the scheduler and the reconciler; any number serve the API.

Every ``rota server`` on one store is a candidate for the ``control`` lease (a row of the
store, ``rota.domain.leadership`` decides). The leader renews it every ``renew_s``; a
standby takes it over when it lapses and rebuilds its jobs from the store (``elected``),
and a leader that lost it stops its loops (``deposed``) before anyone else may start. The
epoch is the fencing token: what the reconciler records is checked against it in the
same transaction (``fence``). A standby's API changes a task or an endpoint: it leaves a
nudge in the store, which the leader picks up within ``poll_s``.

The transitions and the nudges run on a thread of their own: a long catch-up never holds
a renewal back.
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
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from rota.domain.leadership import Candidate, Lease, Step
from rota.store.db import Database
from rota.store.leader_tables import LeaseRow, NudgeRow
from rota.store.tables import utcnow

log = logging.getLogger(__name__)

NAME = "control"
NUDGES_KEPT_S = 300  # nudges older than this are deleted by the leader (it has seen them)


def identity() -> str:
    """This process among the candidates: its host, its pid, and a random part (a container's pid is often 1)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Deposed(Exception):
    """This process no longer holds the lease: what it was about to record is not recorded."""


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
        self._acting = False  # the loops run here (the transitions thread's view)
        self._last_nudge = 0
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
        return self.candidate.leading(self.clock())

    @property
    def epoch(self) -> int | None:
        return self.candidate.epoch if self.leading else None

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

    def stop(self) -> None:
        """Stop the loops here and let the lease go, so a standby takes over at once."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        was = self.candidate.epoch
        self.candidate.lost()
        self._transition().result(timeout=60)
        self._work.shutdown(wait=True)
        if was is not None:
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
        """The leader renews every ``renew_s`` and looks at the nudges in between; a standby
        reads the lease every ``poll_s`` (a takeover comes at most ``poll_s`` after the lapse)."""
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
        began = self.clock()
        with self.db.session() as s:
            row = s.get(LeaseRow, NAME)
            lease = Lease(row.holder, row.epoch, row.renewals) if row else None
            step = self.candidate.next(lease, began)
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
        if step is not Step.RENEW:
            log.info("this control plane leads now (epoch %d)", epoch)
            self._last_nudge = self._newest_nudge()
        self.candidate.held(epoch, began)

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
            self._elected()
        else:
            log.warning("this control plane no longer leads: its scheduler and reconciler stop")
            self._deposed()

    # ------------------------------------------------------------ nudges
    def nudge(self, task_id: int | None) -> None:
        """A change made here while another process leads: it looks at it within ``poll_s``."""
        with self.db.session() as s:
            s.add(NudgeRow(task_id=task_id, at=utcnow()))

    def _newest_nudge(self) -> int:
        with self.db.session() as s:
            return int(s.scalar(select(func.max(NudgeRow.id))) or 0)

    def _poll_nudges(self) -> None:
        with self.db.session() as s:
            rows = s.execute(select(NudgeRow.id, NudgeRow.task_id).where(NudgeRow.id > self._last_nudge)).all()
            if rows:
                s.execute(delete(NudgeRow).where(NudgeRow.at < utcnow() - timedelta(seconds=NUDGES_KEPT_S)))
        if rows:
            self._last_nudge = max(r.id for r in rows)
            task_ids = sorted({r.task_id for r in rows if r.task_id is not None})
            with contextlib.suppress(RuntimeError):  # stopped meanwhile
                self._work.submit(self._nudged, task_ids)

    # ------------------------------------------------------------ fencing and views
    def fence(self, s: Session) -> None:
        """In a transaction that records what the loops did: Deposed unless this process
        still holds the lease (the row is locked until the commit: a takeover waits)."""
        row = s.execute(select(LeaseRow).where(LeaseRow.name == NAME).with_for_update()).scalar_one_or_none()
        if row is None or row.holder != self.me or row.epoch != self.candidate.epoch:
            self.candidate.lost()
            self._transition()
            raise Deposed(f"the lease is held by {row.holder if row else 'nobody'} (epoch {row.epoch if row else '-'})")

    def view(self) -> dict[str, Any]:
        """Who leads and since when, as the store says (None if it cannot be read)."""
        try:
            with self.db.session() as s:
                row = s.get(LeaseRow, NAME)
        except Exception:
            row = None
        return {
            "this_process": self.me,
            "leading": self.leading,
            "leader": row.holder if row else None,
            "epoch": row.epoch if row else None,
            "since": row.since.isoformat() if row and row.holder else None,
        }
