"""The Files and Batch APIs as callers see them: upload, read, list and delete files;
create, read, list and cancel batches, by project only."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.orm import Session

from rota.domain.errors import Conflict, InvalidInput
from rota.domain.invocations import (
    ROUTES,
    AsyncStatus,
    BatchCreate,
    BatchLine,
    BatchPage,
    BatchPublic,
    BatchStatus,
    FilePage,
    FilePublic,
    batch_lines,
    new_id,
    window_hours,
)
from rota.services.async_store import QUEUED, AsyncStore, file_public, owned, store_file
from rota.services.auth import Principal
from rota.services.batch_loader import LEASE_S, BatchLoader
from rota.store.async_tables import AsyncRequestRow, BatchRow, FileRow
from rota.store.tables import EndpointRow

log = logging.getLogger("rota.async")


@dataclass
class BatchService(AsyncStore):
    loader: BatchLoader = field(init=False)

    def __post_init__(self) -> None:
        self.loader = BatchLoader(self.db, self.settings.async_max_body_bytes, lambda: self.clock())

    def create_file(self, who: Principal, purpose: str, filename: str, content: bytes) -> FilePublic:
        if purpose != "batch":
            raise InvalidInput("'purpose' must be 'batch' (files hold batch input here)", field="purpose")
        if len(content) > self.settings.async_max_file_bytes:
            raise InvalidInput(f"the file is over the limit of {self.settings.async_max_file_bytes} bytes", field="file")
        now = self.clock()
        with self.db.session() as s:
            row = store_file(s, who.project_id, purpose, filename, content, now, self.settings.async_retention_days)
            return file_public(row)

    def file(self, who: Principal, file_id: str) -> FilePublic:
        with self.db.session() as s:
            return file_public(self._file(s, who, file_id))

    def file_content(self, who: Principal, file_id: str) -> bytes:
        with self.db.session() as s:
            return self._file(s, who, file_id).content

    def files(self, who: Principal, limit: int = 100, after: str | None = None, purpose: str | None = None) -> FilePage:
        with self.db.session() as s:
            q = select(FileRow).where(FileRow.project_id == who.project_id)
            if purpose:
                q = q.where(FileRow.purpose == purpose)
            rows = newest(s, q, FileRow, self._file(s, who, after, "after") if after else None, limit)
            data = [file_public(r) for r in rows[:limit]]
            return FilePage(
                data=data,
                first_id=data[0].id if data else None,
                last_id=data[-1].id if data else None,
                has_more=len(rows) > limit,
            )

    def delete_file(self, who: Principal, file_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            row = self._file(s, who, file_id)
            loading = s.scalar(select(BatchRow.id).where(BatchRow.input_file_id == row.id, BatchRow.loaded_at.is_(None)))
            if loading:
                raise Conflict(f"batch {loading} is still queueing this file's lines: delete it once it is in progress")
            s.delete(row)
        return {"id": file_id, "object": "file", "deleted": True}

    # --- batches ---------------------------------------------------------------------

    def create_batch(self, who: Principal, data: BatchCreate) -> BatchPublic:
        """Checked whole (every line, the queue's room), stored ``validating``, its lines
        queued a chunk per transaction (``batch_loader.py``), then ``in_progress``."""
        if data.endpoint not in ROUTES:
            raise InvalidInput(f"'endpoint' must be one of {', '.join(ROUTES)}", field="endpoint")
        hours = window_hours(data.completion_window)
        batch_id = new_id("batch")
        lines, window, stored = self._store_batch(who, data, batch_id, hours)  # with the loader's lease
        # Stored: from here on the batch is the caller's whatever happens (an error would
        # make a client retry, and create it twice); housekeeping queues what is left.
        try:
            self.nudge()  # the first chunks can be sent while the rest go in
            self.loader.load(batch_id, lines)
            self.nudge()
            with self.db.session() as s:
                return self._batch(s, self._batch_row(s, who, batch_id), window)
        except Exception as e:
            log.warning("async: batch %s: its lines will be queued later: %s", batch_id, e)
            return stored

    def _store_batch(
        self, who: Principal, data: BatchCreate, batch_id: str, hours: int
    ) -> tuple[list[BatchLine], datetime | None, BatchPublic]:
        now = self.clock()
        with self.db.session() as s:
            source = self._file(s, who, data.input_file_id, field="input_file_id")
            lines = batch_lines(source.content, self.settings.async_max_body_bytes)
            if lines[0].route != data.endpoint:
                raise InvalidInput(f"the file's lines call {lines[0].route}, not {data.endpoint}", field="endpoint")
            model = lines[0].submission.model
            ep_id, key, stored = self._endpoint_key(s, who, model, field="input_file_id")
            expires = now + hours * 3600
            window = None
            if data.run_in_window:
                window = self._window(s, s.get(EndpointRow, ep_id), now)
                if window is not None and window.timestamp() >= expires:
                    raise InvalidInput(
                        f"the endpoint's next scheduled window opens at {window.isoformat()}, after this batch's "
                        f"completion window ({data.completion_window}) ends",
                        field="completion_window",
                    )
            self._room(s, ep_id, key, stored, len(lines), field="input_file_id")
            batch = BatchRow(
                id=batch_id,
                project_id=who.project_id,
                endpoint_id=ep_id,
                model=model,
                route=data.endpoint,
                input_file_id=source.id,
                status=BatchStatus.VALIDATING.value,
                completion_window=data.completion_window,
                meta=data.metadata,
                run_in_window=data.run_in_window,
                total=len(lines),
                created_at=now,
                expires_at=expires,
                loading_until=now + LEASE_S,  # this thread loads it
                load_tries=1,
            )
            s.add(batch)
            s.flush()
            return lines, window, self._batch(s, batch, window)

    def batch(self, who: Principal, batch_id: str) -> BatchPublic:
        with self.db.session() as s:
            return self._batch(s, self._batch_row(s, who, batch_id))

    def batches(self, who: Principal, limit: int = 20, after: str | None = None, endpoint_id: int | None = None) -> BatchPage:
        with self.db.session() as s:
            q = select(BatchRow).where(BatchRow.project_id == who.project_id)
            if endpoint_id is not None:
                q = q.where(BatchRow.endpoint_id == endpoint_id)
            rows = newest(s, q, BatchRow, self._batch_row(s, who, after) if after else None, limit)
            data = [self._batch(s, r) for r in rows[:limit]]
            return BatchPage(
                data=data,
                first_id=data[0].id if data else None,
                last_id=data[-1].id if data else None,
                has_more=len(rows) > limit,
            )

    def cancel_batch(self, who: Principal, batch_id: str) -> BatchPublic:
        """Queued lines are cancelled at once; lines being sent finish; then ``cancelled``."""
        now = self.clock()
        with self.db.session() as s:
            batch = self._batch_row(s, who, batch_id)
            changed = s.execute(
                update(BatchRow)
                .where(
                    BatchRow.id == batch.id, BatchRow.status.in_([BatchStatus.IN_PROGRESS.value, BatchStatus.VALIDATING.value])
                )
                .values(status=BatchStatus.CANCELLING.value, cancelling_at=now)
                .execution_options(synchronize_session=False)
            )
            s.refresh(batch)
            if not getattr(changed, "rowcount", 0):
                raise Conflict(f"batch {batch.id} is {batch.status}: it cannot be cancelled", field="id")
            s.execute(
                update(AsyncRequestRow)
                .where(AsyncRequestRow.batch_id == batch.id, AsyncRequestRow.status == QUEUED)
                .values(status=AsyncStatus.CANCELLED.value, finished_at=now)
            )
            s.flush()
            out = self._batch(s, batch)
        self.nudge()
        return out

    # --- helpers ---------------------------------------------------------------------

    @staticmethod
    def _file(s: Session, who: Principal, file_id: str, field: str = "id") -> FileRow:
        return owned(s, who, FileRow, file_id, "file", field)

    @staticmethod
    def _batch_row(s: Session, who: Principal, batch_id: str) -> BatchRow:
        return owned(s, who, BatchRow, batch_id, "batch")

    def _batch(self, s: Session, b: BatchRow, window: datetime | None = None) -> BatchPublic:
        counts = dict(
            s.execute(
                select(AsyncRequestRow.status, func.count())
                .where(AsyncRequestRow.batch_id == b.id)
                .group_by(AsyncRequestRow.status)
            ).all()
        )
        failed = sum(counts.get(k, 0) for k in ("failed", "expired"))

        def t(x: float | None) -> int | None:
            return None if x is None else int(x)

        return BatchPublic(
            id=b.id,
            endpoint=b.route,
            model=b.model,
            input_file_id=b.input_file_id,
            completion_window=b.completion_window,
            status=BatchStatus(b.status),
            output_file_id=b.output_file_id,
            error_file_id=b.error_file_id,
            created_at=int(b.created_at),
            in_progress_at=t(b.in_progress_at),
            expires_at=t(b.expires_at),
            finalizing_at=t(b.finalizing_at),
            completed_at=t(b.completed_at),
            expired_at=t(b.expired_at),
            cancelling_at=t(b.cancelling_at),
            cancelled_at=t(b.cancelled_at),
            request_counts={"total": b.total, "completed": counts.get("succeeded", 0), "failed": failed},
            failed_at=t(b.failed_at),
            errors=None
            if b.failed_at is None
            else {"object": "list", "data": [{"code": "batch_failed", "message": b.load_error, "param": "input_file_id"}]},
            metadata=b.meta,
            run_in_window=b.run_in_window,
            window_opens_at=window.timestamp() if window else None,
        )


Listed = TypeVar("Listed", FileRow, BatchRow)


def newest(s: Session, q: Select[Any], row: type[Listed], after: Listed | None, limit: int) -> Sequence[Listed]:
    """Up to ``limit + 1`` rows of ``q``, newest first, after the row ``after`` (a keyset
    page: one more than asked says whether there are more)."""
    if after is not None:
        q = q.where(or_(row.created_at < after.created_at, and_(row.created_at == after.created_at, row.id < after.id)))
    return s.scalars(q.order_by(row.created_at.desc(), row.id.desc()).limit(limit + 1)).all()
