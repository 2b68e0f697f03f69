"""Async requests, files and batches as callers see them: submit, read, cancel and list, by
project only (the dispatcher's side of the store is ``async_queue.py``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from rota.config import Settings
from rota.crypto import Cipher
from rota.domain.endpoints import Desired
from rota.domain.errors import Conflict, InvalidInput, NotFound, RotaError
from rota.domain.invocations import (
    ROUTES,
    AsyncPage,
    AsyncPublic,
    AsyncStatus,
    BatchCreate,
    BatchPage,
    BatchPublic,
    BatchStatus,
    FilePublic,
    batch_lines,
    new_id,
    next_window,
    submission,
    window_hours,
)
from rota.domain.tasks import TaskStatus
from rota.services import views
from rota.services.auth import Principal
from rota.store.db import Database
from rota.store.tables import AsyncRequestRow, BatchRow, EndpointRow, FileRow, TaskRow

DAY_S = 86_400.0
QUEUED, RUNNING = AsyncStatus.QUEUED.value, AsyncStatus.RUNNING.value
OPEN = (QUEUED, RUNNING)
BATCH_OPEN = (BatchStatus.IN_PROGRESS.value, BatchStatus.CANCELLING.value, BatchStatus.VALIDATING.value)


class QueueFull(RotaError):
    code = "queue_full"
    status_code = 429


@dataclass
class InvocationService:
    db: Database
    settings: Settings
    cipher: Cipher
    clock: Callable[[], float] = time.time
    nudge: Callable[[], None] = lambda: None  # there is new work: the dispatcher looks now

    # --- callers ---------------------------------------------------------------------

    def submit(self, who: Principal, route: str, raw: bytes) -> AsyncPublic:
        sub = submission(raw, route, self.settings.async_max_body_bytes)
        now = self.clock()
        with self.db.session() as s:
            ep_id, key = self._endpoint_key(s, who, sub.model)
            window = self._window(s, s.get(EndpointRow, ep_id), now) if sub.run_in_window else None
            self._room(s, ep_id, key, 1)
            row = AsyncRequestRow(
                id=new_id("async"),
                project_id=who.project_id,
                endpoint_id=ep_id,
                model=sub.model,
                route=route,
                body=sub.body,
                status=QUEUED,
                attempts=0,
                not_before=0.0,
                run_in_window=sub.run_in_window,
                webhook_url=sub.webhook_url,
                webhook_attempts=0,
                created_at=now,
                expires_at=now + self.settings.async_retention_days * DAY_S,
            )
            s.add(row)
            s.flush()
            out = public(row, window)
        self.nudge()
        return out

    def get(self, who: Principal, request_id: str) -> AsyncPublic:
        with self.db.session() as s:
            row = self._request(s, who, request_id)
            window = None
            if row.run_in_window and row.status == QUEUED:
                window = self._window(s, s.get(EndpointRow, row.endpoint_id), self.clock(), required=False)
            return public(row, window)

    def requests(
        self,
        who: Principal,
        limit: int = 20,
        after: str | None = None,
        status: str | None = None,
        model: str | None = None,
        endpoint_id: int | None = None,
    ) -> AsyncPage:
        """The project's single requests (not batch lines), newest first; ``after``: an id
        of the previous page."""
        with self.db.session() as s:
            q = select(AsyncRequestRow).where(AsyncRequestRow.project_id == who.project_id, AsyncRequestRow.batch_id.is_(None))
            for column, value in (
                (AsyncRequestRow.status, status),
                (AsyncRequestRow.model, model),
                (AsyncRequestRow.endpoint_id, endpoint_id),
            ):
                if value:
                    q = q.where(column == value)
            if after:
                last = self._request(s, who, after)
                q = q.where(
                    or_(
                        AsyncRequestRow.created_at < last.created_at,
                        and_(AsyncRequestRow.created_at == last.created_at, AsyncRequestRow.id < last.id),
                    )
                )
            rows = s.scalars(q.order_by(AsyncRequestRow.created_at.desc(), AsyncRequestRow.id.desc()).limit(limit + 1)).all()
            return AsyncPage(data=[public(r) for r in rows[:limit]], has_more=len(rows) > limit)

    def cancel(self, who: Principal, request_id: str) -> AsyncPublic:
        """A queued request is cancelled; one already sent is not (409)."""
        now = self.clock()
        with self.db.session() as s:
            row = self._request(s, who, request_id)
            if row.batch_id:
                raise Conflict(f"request {row.id} is a line of batch {row.batch_id}: cancel the batch", field="id")
            changed = s.execute(
                update(AsyncRequestRow)
                .where(AsyncRequestRow.id == row.id, AsyncRequestRow.status == QUEUED)
                .values(status=AsyncStatus.CANCELLED.value, finished_at=now)
                .execution_options(synchronize_session=False)
            )
            s.refresh(row)
            if not getattr(changed, "rowcount", 0):
                raise Conflict(f"request {row.id} is {row.status}: only a queued request can be cancelled", field="id")
            return public(row)

    def webhook_secret(self, who: Principal) -> str:
        """The project's webhook signing secret (HMAC-SHA256 key of ``x-rota-signature``)."""
        return webhook_secret(self.cipher, who.project_id)

    # --- files -----------------------------------------------------------------------

    def create_file(self, who: Principal, purpose: str, filename: str, content: bytes) -> FilePublic:
        if purpose != "batch":
            raise InvalidInput("'purpose' must be 'batch' (files hold batch input here)", field="purpose")
        if len(content) > self.settings.async_max_file_bytes:
            raise InvalidInput(f"the file is over the limit of {self.settings.async_max_file_bytes} bytes", field="file")
        now = self.clock()
        with self.db.session() as s:
            row = store_file(s, who.project_id, purpose, filename, content, now, self.settings.async_retention_days)
            return _file(row)

    def file(self, who: Principal, file_id: str) -> FilePublic:
        with self.db.session() as s:
            return _file(self._file(s, who, file_id))

    def file_content(self, who: Principal, file_id: str) -> bytes:
        with self.db.session() as s:
            return self._file(s, who, file_id).content

    def files(self, who: Principal, limit: int = 100) -> list[FilePublic]:
        with self.db.session() as s:
            rows = s.scalars(
                select(FileRow).where(FileRow.project_id == who.project_id).order_by(FileRow.created_at.desc()).limit(limit)
            ).all()
            return [_file(r) for r in rows]

    def delete_file(self, who: Principal, file_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            s.delete(self._file(s, who, file_id))
        return {"id": file_id, "object": "file", "deleted": True}

    # --- batches ---------------------------------------------------------------------

    def create_batch(self, who: Principal, data: BatchCreate) -> BatchPublic:
        if data.endpoint not in ROUTES:
            raise InvalidInput(f"'endpoint' must be one of {', '.join(ROUTES)}", field="endpoint")
        hours = window_hours(data.completion_window)
        now = self.clock()
        with self.db.session() as s:
            source = self._file(s, who, data.input_file_id, field="input_file_id")
            lines = batch_lines(source.content, self.settings.async_max_body_bytes)
            if lines[0].route != data.endpoint:
                raise InvalidInput(f"the file's lines call {lines[0].route}, not {data.endpoint}", field="endpoint")
            model = lines[0].submission.model
            ep_id, key = self._endpoint_key(s, who, model, field="input_file_id")
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
            self._room(s, ep_id, key, len(lines), field="input_file_id")
            batch = BatchRow(
                id=new_id("batch"),
                project_id=who.project_id,
                endpoint_id=ep_id,
                model=model,
                route=data.endpoint,
                input_file_id=source.id,
                status=BatchStatus.IN_PROGRESS.value,
                completion_window=data.completion_window,
                meta=data.metadata,
                run_in_window=data.run_in_window,
                total=len(lines),
                created_at=now,
                in_progress_at=now,
                expires_at=expires,
            )
            s.add(batch)
            s.add_all(
                AsyncRequestRow(
                    id=f"{batch.id}_{i}",
                    project_id=who.project_id,
                    endpoint_id=ep_id,
                    model=model,
                    route=line.route,
                    body=line.submission.body,
                    status=QUEUED,
                    attempts=0,
                    not_before=0.0,
                    run_in_window=data.run_in_window,
                    batch_id=batch.id,
                    custom_id=line.custom_id,
                    line=i,
                    webhook_attempts=0,
                    created_at=now,
                    expires_at=expires,
                )
                for i, line in enumerate(lines)
            )
            s.flush()
            out = self._batch(s, batch, window)
        self.nudge()
        return out

    def batch(self, who: Principal, batch_id: str) -> BatchPublic:
        with self.db.session() as s:
            return self._batch(s, self._batch_row(s, who, batch_id))

    def batches(self, who: Principal, limit: int = 20, after: str | None = None, endpoint_id: int | None = None) -> BatchPage:
        with self.db.session() as s:
            q = select(BatchRow).where(BatchRow.project_id == who.project_id)
            if endpoint_id is not None:
                q = q.where(BatchRow.endpoint_id == endpoint_id)
            if after:
                last = self._batch_row(s, who, after)
                q = q.where(
                    or_(
                        BatchRow.created_at < last.created_at, and_(BatchRow.created_at == last.created_at, BatchRow.id < last.id)
                    )
                )
            rows = s.scalars(q.order_by(BatchRow.created_at.desc(), BatchRow.id.desc()).limit(limit + 1)).all()
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
    def _endpoint_key(s: Session, who: Principal, model: str, field: str = "model") -> tuple[int, str]:
        """The id and routing key of the caller's endpoint ``model`` (plain columns: every
        submit looks it up)."""
        row = s.execute(
            select(EndpointRow.id, EndpointRow.routing_key).where(
                EndpointRow.project_id == who.project_id,
                EndpointRow.routing_key == model,
                EndpointRow.desired != Desired.DELETED.value,
            )
        ).first()
        if row is None:
            raise NotFound(f"the model {model[:200]!r} does not exist or you do not have access to it", field=field)
        return int(row[0]), str(row[1])

    def _room(self, s: Session, ep_id: int, routing_key: str, n: int, field: str = "model") -> None:
        depth = s.scalar(select(func.count()).where(AsyncRequestRow.endpoint_id == ep_id, AsyncRequestRow.status.in_(OPEN)))
        if (depth or 0) + n > self.settings.async_max_depth:
            raise QueueFull(
                f"endpoint {routing_key!r} has {depth} async requests waiting (at most {self.settings.async_max_depth}); "
                "retry later",
                field=field,
            )

    @staticmethod
    def _window(s: Session, ep: EndpointRow | None, now: float, required: bool = True) -> datetime | None:
        """When the endpoint's next scheduled window opens (None: it serves now, or it is
        always on); ``required``: no window ahead is a 422."""
        if ep is None:
            return None
        b = views.bounds(ep)
        if ep.status == "RUNNING" or (b is not None and b.min >= 1 and ep.scheduled_min is None):
            return None
        tasks = s.scalars(select(TaskRow).where(TaskRow.endpoint_id == ep.id, TaskRow.status == TaskStatus.ACTIVE.value)).all()
        at = next_window([views.spec_of(t) for t in tasks], datetime.fromtimestamp(now, timezone.utc))
        if at is None and required:
            raise InvalidInput(
                f"endpoint {ep.routing_key!r} has no scheduled window ahead (no active task entry with min_replicas >= 1): "
                "run_in_window work would never run",
                field="run_in_window",
            )
        return at  # type: ignore[no-any-return]

    @staticmethod
    def _request(s: Session, who: Principal, request_id: str) -> AsyncRequestRow:
        row = s.get(AsyncRequestRow, request_id[:40])
        if row is None or row.project_id != who.project_id:
            raise NotFound(f"no async request {request_id[:64]!r}", field="id")
        return row

    @staticmethod
    def _file(s: Session, who: Principal, file_id: str, field: str = "id") -> FileRow:
        row = s.get(FileRow, file_id[:40])
        if row is None or row.project_id != who.project_id:
            raise NotFound(f"no file {file_id[:64]!r}", field=field)
        return row

    @staticmethod
    def _batch_row(s: Session, who: Principal, batch_id: str) -> BatchRow:
        row = s.get(BatchRow, batch_id[:40])
        if row is None or row.project_id != who.project_id:
            raise NotFound(f"no batch {batch_id[:64]!r}", field="id")
        return row

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
            metadata=b.meta,
            run_in_window=b.run_in_window,
            window_opens_at=window.timestamp() if window else None,
        )


def webhook_secret(cipher: Cipher, project_id: int) -> str:
    return cipher.derive(f"webhook-secret/{project_id}")


def store_file(s: Session, project_id: int, purpose: str, filename: str, content: bytes, now: float, days: int) -> FileRow:
    """A file kept ``days``: an upload, or a batch's output or errors."""
    row = FileRow(
        id=new_id("file"),
        project_id=project_id,
        purpose=purpose,
        filename=(filename or "file.jsonl")[:255],
        size=len(content),
        content=content,
        created_at=now,
        expires_at=now + days * DAY_S,
    )
    s.add(row)
    s.flush()
    return row


def json_or_text(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def public(r: AsyncRequestRow, window: datetime | None = None) -> AsyncPublic:
    hook = None
    if r.webhook_url:
        hook = {"url": r.webhook_url, "status": r.webhook_status, "attempts": r.webhook_attempts, "last_error": r.webhook_error}
    return AsyncPublic(
        id=r.id,
        status=AsyncStatus(r.status),
        model=r.model,
        url=r.route,
        created_at=r.created_at,
        started_at=r.started_at,
        finished_at=r.finished_at,
        expires_at=r.expires_at,
        attempts=r.attempts,
        status_code=r.status_code,
        response=json_or_text(r.response),
        error=r.error,
        run_in_window=r.run_in_window,
        window_opens_at=window.timestamp() if window else None,
        webhook=hook,
        batch_id=r.batch_id,
        custom_id=r.custom_id,
    )


def _file(r: FileRow) -> FilePublic:
    return FilePublic(
        id=r.id,
        bytes=r.size,
        created_at=int(r.created_at),
        filename=r.filename,
        purpose=r.purpose,
        expires_at=None if r.expires_at is None else int(r.expires_at),
    )
