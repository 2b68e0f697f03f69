"""A batch's lines into the queue, a chunk per transaction.

Up to 50,000 lines are queued ``LINES_PER_TX`` per transaction, so the store's write lock
is held for one chunk at a time and submits, the dispatcher and the API go on between
them. The batch is ``validating`` while its lines go in; its first lines may be sent
already. Then it is concluded: ``in_progress``, or, cancelled meanwhile, its queued lines
cancelled. ``loaded_at`` says it was concluded: a batch is never finalised before.

Whoever loads a batch holds a lease on its row (``loading_until``, renewed with each
chunk; taken with the row when the API stores it), so two threads or two control planes
never load one batch at once; the try that took it (``load_tries``) fences a loader that
stalled past its lease: its renewals, and so its chunks, fail. Chunks go in in line order and each is whole or absent, so
a load cut short (a crash, the store away) resumes from the last line stored, once its
lease lapses: ``resume`` (on a thread of its own: the dispatcher's sends do not wait
for it). After ``MAX_LOADS`` tries, or a file that no longer parses, the batch fails,
with the reason in its ``errors``, and what it queued is not sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import exists, func, insert, or_, select, update
from sqlalchemy.orm import Session

from rota.domain.errors import Conflict, InvalidInput
from rota.domain.invocations import AsyncStatus, BatchLine, BatchStatus, batch_lines
from rota.store.async_tables import AsyncRequestRow, BatchRow, FileRow
from rota.store.db import Database

LINES_PER_TX = 1_000
LEASE_S = 30.0
MAX_LOADS = 5
VALIDATING, CANCELLING = BatchStatus.VALIDATING.value, BatchStatus.CANCELLING.value
QUEUED = AsyncStatus.QUEUED.value
log = logging.getLogger("rota.async")


class LostLease(Exception):
    """Another loader holds the batch now (this one stalled past its lease)."""


@dataclass
class BatchLoader:
    db: Database
    max_body_bytes: int
    clock: Callable[[], float] = time.time
    _resuming: threading.Lock = field(default_factory=threading.Lock)

    def load(self, batch_id: str, lines: Sequence[BatchLine], lease: int = 1) -> None:
        """Queue the lines of ``batch_id`` not queued yet, then conclude it. The caller
        holds its lease: ``lease`` is the try it took it with (the API's store is try 1),
        its fencing token: a loader whose lease was taken over renews nothing, and so
        writes nothing more. On an error the lease is let go, for ``resume`` to go on."""
        try:
            self._load(batch_id, lines, lease)
        except (LostLease, Conflict):  # a line it would add is there already: another loader's
            log.warning("async: batch %s: another loader took it over", batch_id)
        except Exception as e:
            self._let_go(batch_id, lease, f"{type(e).__name__}: {e}")
            raise

    def resume_soon(self) -> None:
        """``resume`` on a thread of its own, unless one runs already."""
        if self._resuming.locked():
            return
        threading.Thread(target=self.resume, name="rota-batch-resume", daemon=True).start()

    def resume(self) -> int:
        """Batches left unconcluded by a load cut short, whose lease lapsed: loaded again
        from their input file (what is stored already is kept). How many were resumed."""
        if not self._resuming.acquire(blocking=False):
            return 0
        try:
            with self.db.session() as s:
                ids = s.scalars(
                    select(BatchRow.id).where(BatchRow.status.in_([VALIDATING, CANCELLING]), BatchRow.loaded_at.is_(None))
                ).all()
            return sum(self._resume(batch_id) for batch_id in ids)
        finally:
            self._resuming.release()

    def _resume(self, batch_id: str) -> bool:
        try:
            tries = self._claim(batch_id)
            if tries is None:
                return False  # loading elsewhere now
            with self.db.session() as s:
                content = s.scalar(
                    select(FileRow.content).join(BatchRow, BatchRow.input_file_id == FileRow.id).where(BatchRow.id == batch_id)
                )
            if tries > MAX_LOADS:
                self._fail(batch_id, f"its lines could not be queued in {MAX_LOADS} tries")
                return False
            try:
                lines = batch_lines(content or b"", self.max_body_bytes)
            except InvalidInput as e:  # a lower body limit since, or the file gone
                self._fail(batch_id, f"its input file no longer parses: {e}")
                return False
            log.info("async: batch %s resumes queueing its %d lines (try %d)", batch_id, len(lines), tries)
            self.load(batch_id, lines, tries)
            return True
        except Exception as e:  # the store is away again: the next housekeeping tries again
            log.warning("async: batch %s could not resume: %s", batch_id, e)
            return False

    def _claim(self, batch_id: str) -> int | None:
        """The lease on an unconcluded batch whose lease lapsed, and the tries so far with
        this one (None: someone holds it)."""
        now = self.clock()
        with self.db.session() as s:
            changed = s.execute(
                update(BatchRow)
                .where(
                    BatchRow.id == batch_id,
                    BatchRow.loaded_at.is_(None),
                    or_(BatchRow.loading_until.is_(None), BatchRow.loading_until < now),
                )
                .values(loading_until=now + LEASE_S, load_tries=BatchRow.load_tries + 1)
                .execution_options(synchronize_session=False)
            )
            if not getattr(changed, "rowcount", 0):
                return None
            return int(s.scalar(select(BatchRow.load_tries).where(BatchRow.id == batch_id)) or 0)

    def _load(self, batch_id: str, lines: Sequence[BatchLine], lease: int) -> None:
        with self.db.session() as s:
            b = s.get(BatchRow, batch_id)
            if b is None or b.loaded_at is not None:
                return
            same = {
                "project_id": b.project_id,
                "endpoint_id": b.endpoint_id,
                "model": b.model,
                "run_in_window": b.run_in_window,
                "batch_id": b.id,
                "created_at": b.created_at,
                "expires_at": b.expires_at,
            }
            last = s.scalar(select(func.max(AsyncRequestRow.line)).where(AsyncRequestRow.batch_id == batch_id))
        for start in range(0 if last is None else last + 1, len(lines), LINES_PER_TX):
            with self.db.session() as s:
                # The batch's row locked on PostgreSQL until the chunk commits, so a cancel
                # lands before or after it (on SQLite, one that lands between is undone by
                # the conclusion).
                if s.scalar(select(BatchRow.status).where(BatchRow.id == batch_id).with_for_update()) != VALIDATING:
                    break  # cancelled: what is left is not queued
                s.execute(
                    insert(AsyncRequestRow),
                    [
                        {
                            "id": f"{batch_id}_{i}",
                            "route": line.route,
                            "body": line.submission.body,
                            "status": QUEUED,
                            "attempts": 0,
                            "not_before": 0.0,
                            "custom_id": line.custom_id,
                            "line": i,
                            "webhook_attempts": 0,
                            **same,
                        }
                        for i, line in enumerate(lines[start : start + LINES_PER_TX], start=start)
                    ],
                )
                now = self.clock()
                renewed = s.execute(  # in the chunk's transaction: a loader that lost its lease writes nothing
                    update(BatchRow)
                    .where(BatchRow.id == batch_id, BatchRow.loaded_at.is_(None), BatchRow.load_tries == lease)
                    .values(loading_until=now + LEASE_S)
                    .execution_options(synchronize_session=False)
                )
                if not getattr(renewed, "rowcount", 0):
                    raise LostLease(batch_id)
        self._conclude(batch_id)

    def _conclude(self, batch_id: str) -> None:
        now = self.clock()
        with self.db.session() as s:
            s.execute(
                update(BatchRow)
                .where(BatchRow.id == batch_id, BatchRow.status == VALIDATING)
                .values(status=BatchStatus.IN_PROGRESS.value, in_progress_at=now)
            )
            self._cancel_queued(s, batch_id, now, CANCELLING)  # lines that went in while a cancel was landing
            s.execute(update(BatchRow).where(BatchRow.id == batch_id).values(loaded_at=now, loading_until=None))

    def _fail(self, batch_id: str, reason: str) -> None:
        """Given up: a validating batch fails with the reason (its queued lines not sent); a
        cancelled one ends as a cancel does."""
        now = self.clock()
        log.warning("async: batch %s: %s", batch_id, reason)
        with self.db.session() as s:
            s.execute(
                update(BatchRow)
                .where(BatchRow.id == batch_id, BatchRow.status == VALIDATING)
                .values(status=BatchStatus.FAILED.value, failed_at=now, load_error=reason[:2000])
            )
            self._cancel_queued(s, batch_id, now, BatchStatus.FAILED.value, CANCELLING)
            s.execute(update(BatchRow).where(BatchRow.id == batch_id).values(loaded_at=now, loading_until=None))

    def _let_go(self, batch_id: str, lease: int, error: str) -> None:
        try:
            with self.db.session() as s:
                s.execute(
                    update(BatchRow)
                    .where(BatchRow.id == batch_id, BatchRow.loaded_at.is_(None), BatchRow.load_tries == lease)
                    .values(loading_until=None, load_error=error[:2000])
                )
        except Exception as e:  # the store is away: the lease lapses by itself
            log.warning("async: batch %s: could not let its load go: %s", batch_id, e)

    @staticmethod
    def _cancel_queued(s: Session, batch_id: str, now: float, *statuses: str) -> None:
        ended = exists().where(BatchRow.id == batch_id, BatchRow.status.in_(statuses))
        s.execute(
            update(AsyncRequestRow)
            .where(AsyncRequestRow.batch_id == batch_id, AsyncRequestRow.status == QUEUED, ended)
            .values(status=AsyncStatus.CANCELLED.value, finished_at=now)
        )
