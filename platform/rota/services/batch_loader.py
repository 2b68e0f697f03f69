"""A batch's lines into the queue, a chunk per transaction.

Up to 50,000 lines are queued ``LINES_PER_TX`` per transaction, so the store's write lock
is held for one chunk at a time and submits, the dispatcher and the API go on between
them. The batch is ``validating`` while its lines go in; its first lines may be sent
already. Then it is concluded: ``in_progress``, or, cancelled meanwhile, its queued lines
cancelled. ``loaded_at`` says it was concluded: a batch is never finalised before.

Chunks go in in line order and each is whole or absent, so a load cut short (a crash,
the store away) resumes from the last line stored: housekeeping resumes every batch left
``validating`` that no thread of this process is loading.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import exists, func, insert, select, update

from rota.domain.errors import InvalidInput
from rota.domain.invocations import AsyncStatus, BatchLine, BatchStatus, batch_lines
from rota.store.async_tables import AsyncRequestRow, BatchRow, FileRow
from rota.store.db import Database

LINES_PER_TX = 1_000
VALIDATING, CANCELLING = BatchStatus.VALIDATING.value, BatchStatus.CANCELLING.value
log = logging.getLogger("rota.async")


@dataclass
class BatchLoader:
    db: Database
    max_body_bytes: int
    clock: Callable[[], float] = time.time
    loading: set[str] = field(default_factory=set)  # batches a thread of this process is loading now
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def claim(self, batch_id: str) -> Iterator[bool]:
        """This thread loads ``batch_id`` (True), or another one does already (False).
        Claimed before the batch is stored, so housekeeping never takes it up meanwhile."""
        with self._lock:
            mine = batch_id not in self.loading
            self.loading.add(batch_id)
        try:
            yield mine
        finally:
            if mine:
                with self._lock:
                    self.loading.discard(batch_id)

    def load(self, batch_id: str, lines: Sequence[BatchLine]) -> None:
        """Queue the lines of ``batch_id`` not queued yet, then conclude it (the caller
        holds the claim)."""
        self._load(batch_id, lines)

    def resume(self) -> int:
        """Batches left unconcluded by a load that was cut short: loaded again from their
        input file (what is stored already is kept). How many were resumed; one that fails
        again is tried at the next housekeeping, and does not hold up the others."""
        with self.db.session() as s:
            rows = s.execute(
                select(BatchRow.id, BatchRow.input_file_id).where(
                    BatchRow.status.in_([VALIDATING, CANCELLING]), BatchRow.loaded_at.is_(None)
                )
            ).all()
        resumed = 0
        for batch_id, file_id in rows:
            with self.claim(batch_id) as mine:
                if not mine:
                    continue
                try:
                    with self.db.session() as s:
                        content = s.scalar(select(FileRow.content).where(FileRow.id == file_id))
                    # A file that no longer parses (a lower body limit since): the lines in stay, the rest is not queued.
                    try:
                        lines = batch_lines(content or b"", self.max_body_bytes)
                    except InvalidInput as e:
                        log.warning("async: batch %s: its file no longer parses (%s): concluded as it is", batch_id, e)
                        lines = []
                    log.info("async: batch %s resumes loading its %d lines", batch_id, len(lines))
                    self.load(batch_id, lines)
                    resumed += 1
                except Exception as e:  # the store is away again: next time
                    log.warning("async: batch %s could not resume loading: %s", batch_id, e)
        return resumed

    def _load(self, batch_id: str, lines: Sequence[BatchLine]) -> None:
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
                if s.scalar(select(BatchRow.status).where(BatchRow.id == batch_id)) != VALIDATING:
                    break  # cancelled: what is left is not queued
                s.execute(
                    insert(AsyncRequestRow),
                    [
                        {
                            "id": f"{batch_id}_{i}",
                            "route": line.route,
                            "body": line.submission.body,
                            "status": AsyncStatus.QUEUED.value,
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
        self._conclude(batch_id)

    def _conclude(self, batch_id: str) -> None:
        now = self.clock()
        with self.db.session() as s:
            s.execute(
                update(BatchRow)
                .where(BatchRow.id == batch_id, BatchRow.status == VALIDATING)
                .values(status=BatchStatus.IN_PROGRESS.value, in_progress_at=now)
            )
            cancelled = exists().where(BatchRow.id == batch_id, BatchRow.status == CANCELLING)
            s.execute(  # lines that went in while a cancel was landing are not sent
                update(AsyncRequestRow)
                .where(AsyncRequestRow.batch_id == batch_id, AsyncRequestRow.status == AsyncStatus.QUEUED.value, cancelled)
                .values(status=AsyncStatus.CANCELLED.value, finished_at=now)
            )
            s.execute(update(BatchRow).where(BatchRow.id == batch_id).values(loaded_at=now))
