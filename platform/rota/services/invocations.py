"""Async requests, files and batches: what callers submit and read (by project), and the
store side of the dispatcher (claim, record once, retry, expire, finalise batches, prune).

A request's life: ``queued`` -> ``running`` (claimed: its attempt counted, a lease until
a send must be over) -> ``succeeded`` / ``failed``, or back to ``queued`` (a retry, or its
endpoint had no room). An answer is recorded only by the update that finds the request
still ``running`` on the attempt that sent it: a send that outlived its lease (the
control plane died, a replica hung) can never record a second answer.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from rota.config import Settings
from rota.crypto import Cipher
from rota.domain.endpoints import Desired
from rota.domain.errors import Conflict, InvalidInput, NotFound, RotaError
from rota.domain.invocations import (
    DONE,
    NOT_NOW,
    ROUTES,
    AsyncPage,
    AsyncPublic,
    AsyncStatus,
    BatchCreate,
    BatchPage,
    BatchPublic,
    BatchStatus,
    FilePublic,
    backoff_s,
    batch_lines,
    error_code_of,
    new_id,
    next_window,
    outcome,
    output_line,
    submission,
    window_hours,
)
from rota.domain.tasks import TaskStatus
from rota.services import views
from rota.services.auth import Principal
from rota.store.db import Database
from rota.store.tables import AsyncRequestRow, BatchRow, EndpointRow, FileRow, ProjectRow, TaskRow

DAY_S = 86_400.0
QUEUED, RUNNING = AsyncStatus.QUEUED.value, AsyncStatus.RUNNING.value
OPEN = (QUEUED, RUNNING)
BATCH_OPEN = (BatchStatus.IN_PROGRESS.value, BatchStatus.CANCELLING.value, BatchStatus.VALIDATING.value)
NOT_NOW_S = 0.5  # an endpoint without room is asked again this much later
WEBHOOK_ATTEMPTS = 6


class QueueFull(RotaError):
    code = "queue_full"
    status_code = 429


@dataclass(frozen=True)
class Claimed:
    """A request the dispatcher sends now (plain values: used off the session)."""

    id: str
    project_id: int
    endpoint_id: int
    route: str
    body: bytes
    attempt: int
    claim: str = ""  # the token of this send: only it may record the answer


@dataclass(frozen=True)
class Hook:
    id: str
    project_id: int
    url: str
    attempt: int


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
            ep = self._endpoint(s, who, sub.model)
            window = self._window(s, ep, now) if sub.run_in_window else None
            self._room(s, ep, 1)
            row = AsyncRequestRow(
                id=new_id("async"),
                project_id=who.project_id,
                endpoint_id=ep.id,
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
            out = _public(row, window)
        self.nudge()
        return out

    def get(self, who: Principal, request_id: str) -> AsyncPublic:
        with self.db.session() as s:
            row = self._request(s, who, request_id)
            window = None
            if row.run_in_window and row.status == QUEUED:
                window = self._window(s, s.get(EndpointRow, row.endpoint_id), self.clock(), required=False)
            return _public(row, window)

    def requests(
        self, who: Principal, limit: int = 20, after: str | None = None, status: str | None = None, model: str | None = None
    ) -> AsyncPage:
        """The project's single requests (not batch lines), newest first; ``after``: an id
        of the previous page."""
        with self.db.session() as s:
            q = select(AsyncRequestRow).where(AsyncRequestRow.project_id == who.project_id, AsyncRequestRow.batch_id.is_(None))
            if status:
                q = q.where(AsyncRequestRow.status == status)
            if model:
                q = q.where(AsyncRequestRow.model == model)
            if after:
                last = self._request(s, who, after)
                q = q.where(
                    or_(
                        AsyncRequestRow.created_at < last.created_at,
                        and_(AsyncRequestRow.created_at == last.created_at, AsyncRequestRow.id < last.id),
                    )
                )
            rows = s.scalars(q.order_by(AsyncRequestRow.created_at.desc(), AsyncRequestRow.id.desc()).limit(limit + 1)).all()
            return AsyncPage(data=[_public(r) for r in rows[:limit]], has_more=len(rows) > limit)

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
            return _public(row)

    def webhook_secret(self, who: Principal) -> str:
        """The project's webhook signing secret (HMAC-SHA256 key of ``x-rota-signature``)."""
        return self.cipher.derive(f"webhook-secret/{who.project_id}")

    # --- files -----------------------------------------------------------------------

    def create_file(self, who: Principal, purpose: str, filename: str, content: bytes) -> FilePublic:
        if purpose != "batch":
            raise InvalidInput("'purpose' must be 'batch' (files hold batch input here)", field="purpose")
        if len(content) > self.settings.async_max_file_bytes:
            raise InvalidInput(f"the file is over the limit of {self.settings.async_max_file_bytes} bytes", field="file")
        now = self.clock()
        with self.db.session() as s:
            row = self._file_row(s, who.project_id, purpose, filename, content, now)
            return _file(row)

    def _file_row(self, s: Session, project_id: int, purpose: str, filename: str, content: bytes, now: float) -> FileRow:
        row = FileRow(
            id=new_id("file"),
            project_id=project_id,
            purpose=purpose,
            filename=(filename or "file.jsonl")[:255],
            size=len(content),
            content=content,
            created_at=now,
            expires_at=now + self.settings.async_retention_days * DAY_S,
        )
        s.add(row)
        s.flush()
        return row

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
            ep = self._endpoint(s, who, model, field="input_file_id")
            expires = now + hours * 3600
            window = None
            if data.run_in_window:
                window = self._window(s, ep, now)
                if window is not None and window.timestamp() >= expires:
                    raise InvalidInput(
                        f"the endpoint's next scheduled window opens at {window.isoformat()}, after this batch's "
                        f"completion window ({data.completion_window}) ends",
                        field="completion_window",
                    )
            self._room(s, ep, len(lines), field="input_file_id")
            batch = BatchRow(
                id=new_id("batch"),
                project_id=who.project_id,
                endpoint_id=ep.id,
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
                    endpoint_id=ep.id,
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

    def batches(self, who: Principal, limit: int = 20, after: str | None = None) -> BatchPage:
        with self.db.session() as s:
            q = select(BatchRow).where(BatchRow.project_id == who.project_id)
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

    # --- the dispatcher's side -------------------------------------------------------

    def waiting(self, now: float) -> dict[int, int]:
        """Endpoints with requests ready to send, and how many."""
        with self.db.session() as s:
            rows = s.execute(
                select(AsyncRequestRow.endpoint_id, func.count())
                .where(AsyncRequestRow.status == QUEUED, AsyncRequestRow.not_before <= now)
                .group_by(AsyncRequestRow.endpoint_id)
            ).all()
        return {int(e): int(n) for e, n in rows}

    def claim(self, endpoint_id: int, n: int, now: float, in_window: bool) -> list[Claimed]:
        """Up to ``n`` queued requests of the endpoint, oldest first, marked running (their
        attempt counted); ``in_window``: the endpoint serves now, so ``run_in_window`` ones
        may go too."""
        if n <= 0:
            return []
        lease = now + self.settings.async_timeout_s + 30
        with self.db.session() as s:
            q = select(AsyncRequestRow.id).where(
                AsyncRequestRow.endpoint_id == endpoint_id, AsyncRequestRow.status == QUEUED, AsyncRequestRow.not_before <= now
            )
            if not in_window:
                q = q.where(AsyncRequestRow.run_in_window.is_(False))
            ids = list(s.scalars(q.order_by(AsyncRequestRow.created_at, AsyncRequestRow.line).limit(n)).all())
            if not ids:
                return []
            token = secrets.token_hex(16)
            s.execute(
                update(AsyncRequestRow)
                .where(AsyncRequestRow.id.in_(ids), AsyncRequestRow.status == QUEUED)
                .values(
                    status=RUNNING,
                    claim=token,
                    attempts=AsyncRequestRow.attempts + 1,
                    lease_until=lease,
                    started_at=func.coalesce(AsyncRequestRow.started_at, now),
                )
            )
            rows = s.execute(
                select(
                    AsyncRequestRow.id,
                    AsyncRequestRow.project_id,
                    AsyncRequestRow.endpoint_id,
                    AsyncRequestRow.route,
                    AsyncRequestRow.body,
                    AsyncRequestRow.attempts,
                ).where(AsyncRequestRow.claim == token, AsyncRequestRow.status == RUNNING)
            ).all()
            return [Claimed(r[0], r[1], r[2], r[3], r[4], r[5], claim=token) for r in rows]

    def record(self, c: Claimed, status_code: int | None, body: bytes | None, error: str | None, now: float) -> str:
        """What one send came to: recorded (once), sent again later, or failed for good.
        Returns the outcome (``done``, ``retry``, ``not_now``) or ``stale`` when the request
        had moved on (its lease lapsed and another send took it)."""
        verdict = outcome(status_code, error_code_of(body) if body and status_code and status_code >= 400 else None)
        final = verdict == DONE or (verdict != NOT_NOW and c.attempt >= self.settings.async_max_attempts)
        values: dict[str, Any]
        if final:
            ok = status_code is not None and status_code < 400
            values = {
                "status": AsyncStatus.SUCCEEDED.value if ok else AsyncStatus.FAILED.value,
                "status_code": status_code,
                "response": body,
                "error": None if ok else (error or f"the endpoint answered {status_code}"),
                "finished_at": now,
            }
        elif verdict == NOT_NOW:
            values = {"status": QUEUED, "attempts": c.attempt - 1, "not_before": now + NOT_NOW_S}
        else:
            values = {"status": QUEUED, "not_before": now + backoff_s(c.attempt), "error": error}
        values.update(lease_until=None, claim=None)
        with self.db.session() as s:
            changed = s.execute(
                update(AsyncRequestRow)
                .where(AsyncRequestRow.id == c.id, AsyncRequestRow.status == RUNNING, AsyncRequestRow.claim == c.claim)
                .values(**values)
            )
            if not getattr(changed, "rowcount", 0):
                return "stale"
            if final:
                s.execute(
                    update(AsyncRequestRow)
                    .where(AsyncRequestRow.id == c.id, AsyncRequestRow.webhook_url.is_not(None))
                    .values(webhook_status="pending", webhook_next=now)
                )
        return "done" if final else verdict

    def recover(self, now: float) -> int:
        """At the dispatcher's start: what a previous process was sending when it died goes
        back to the queue (its send was cut short: not counted as an attempt). One process
        dispatches (SQLite is one process's), so nothing else can be sending these."""
        with self.db.session() as s:
            changed = s.execute(
                update(AsyncRequestRow)
                .where(AsyncRequestRow.status == RUNNING)
                .values(status=QUEUED, attempts=AsyncRequestRow.attempts - 1, lease_until=None, claim=None, not_before=now)
            )
        return int(getattr(changed, "rowcount", 0) or 0)

    def abandon(self, endpoint_id: int, now: float) -> None:
        """The endpoint was deleted: what waits for it fails."""
        with self.db.session() as s:
            s.execute(
                update(AsyncRequestRow)
                .where(AsyncRequestRow.endpoint_id == endpoint_id, AsyncRequestRow.status == QUEUED)
                .values(status=AsyncStatus.FAILED.value, finished_at=now, error="the endpoint was deleted")
            )
            s.execute(
                update(AsyncRequestRow)
                .where(
                    AsyncRequestRow.endpoint_id == endpoint_id,
                    AsyncRequestRow.finished_at == now,
                    AsyncRequestRow.webhook_url.is_not(None),
                    AsyncRequestRow.webhook_status.is_(None),
                )
                .values(webhook_status="pending", webhook_next=now)
            )

    def housekeeping(self, now: float) -> None:
        """Lapsed leases back to the queue (or failed, past the attempts), requests past
        their time expired, batches with nothing left finalised."""
        with self.db.session() as s:
            s.execute(
                update(AsyncRequestRow)
                .where(AsyncRequestRow.status == RUNNING, AsyncRequestRow.lease_until < now)
                .values(status=QUEUED, lease_until=None, claim=None, not_before=now, error="the send did not finish in time")
            )
            s.execute(
                update(AsyncRequestRow)
                .where(AsyncRequestRow.status == QUEUED, AsyncRequestRow.attempts >= self.settings.async_max_attempts)
                .values(status=AsyncStatus.FAILED.value, finished_at=now)
            )
            s.execute(
                update(AsyncRequestRow)
                .where(AsyncRequestRow.status == QUEUED, AsyncRequestRow.expires_at < now)
                .values(status=AsyncStatus.EXPIRED.value, finished_at=now, error="not done before it expired")
            )
            s.execute(
                update(AsyncRequestRow)
                .where(
                    AsyncRequestRow.status.in_([AsyncStatus.EXPIRED.value, AsyncStatus.FAILED.value]),
                    AsyncRequestRow.finished_at == now,
                    AsyncRequestRow.webhook_url.is_not(None),
                    AsyncRequestRow.webhook_status.is_(None),
                )
                .values(webhook_status="pending", webhook_next=now)
            )
            cancelling = select(BatchRow.id).where(BatchRow.status == BatchStatus.CANCELLING.value)
            s.execute(  # lines of a cancelled batch that came back to the queue (a retry) are not sent again
                update(AsyncRequestRow)
                .where(AsyncRequestRow.batch_id.in_(cancelling), AsyncRequestRow.status == QUEUED)
                .values(status=AsyncStatus.CANCELLED.value, finished_at=now)
            )
            for batch in s.scalars(
                select(BatchRow).where(BatchRow.status.in_([BatchStatus.IN_PROGRESS.value, BatchStatus.CANCELLING.value]))
            ).all():
                self._maybe_finalise(s, batch, now)

    def _maybe_finalise(self, s: Session, batch: BatchRow, now: float) -> None:
        open_ = s.scalar(select(func.count()).where(AsyncRequestRow.batch_id == batch.id, AsyncRequestRow.status.in_(OPEN)))
        if open_:
            return
        rows = s.execute(
            select(
                AsyncRequestRow.id,
                AsyncRequestRow.custom_id,
                AsyncRequestRow.status,
                AsyncRequestRow.status_code,
                AsyncRequestRow.response,
                AsyncRequestRow.error,
            )
            .where(AsyncRequestRow.batch_id == batch.id)
            .order_by(AsyncRequestRow.line)
        ).all()
        out: list[str] = []
        err: list[str] = []
        for rid, custom_id, status, code, response, error in rows:
            if status == AsyncStatus.CANCELLED.value:
                continue
            line = output_line(rid, custom_id or "", code, _json(response), error if status != "succeeded" else None)
            (out if status == AsyncStatus.SUCCEEDED.value else err).append(json.dumps(line))
        if batch.status == BatchStatus.CANCELLING.value:
            final = {"status": BatchStatus.CANCELLED.value, "cancelled_at": now}
        elif batch.expires_at < now and any(r[2] == AsyncStatus.EXPIRED.value for r in rows):
            final = {"status": BatchStatus.EXPIRED.value, "expired_at": now}
        else:
            final = {"status": BatchStatus.COMPLETED.value, "completed_at": now}
        changed = s.execute(  # only from the status it was read in: a cancel in between wins, or this does
            update(BatchRow)
            .where(BatchRow.id == batch.id, BatchRow.status == batch.status)
            .values(finalizing_at=batch.finalizing_at or now, **final)
            .execution_options(synchronize_session=False)
        )
        if not getattr(changed, "rowcount", 0):
            return
        files = {}
        if out:
            files["output_file_id"] = self._file_row(
                s, batch.project_id, "batch_output", f"{batch.id}_output.jsonl", ("\n".join(out) + "\n").encode(), now
            ).id
        if err:
            files["error_file_id"] = self._file_row(
                s, batch.project_id, "batch_output", f"{batch.id}_error.jsonl", ("\n".join(err) + "\n").encode(), now
            ).id
        if files:
            s.execute(
                update(BatchRow).where(BatchRow.id == batch.id).values(**files).execution_options(synchronize_session=False)
            )

    def hooks_due(self, now: float, limit: int = 64) -> list[Hook]:
        with self.db.session() as s:
            rows = s.execute(
                select(
                    AsyncRequestRow.id, AsyncRequestRow.project_id, AsyncRequestRow.webhook_url, AsyncRequestRow.webhook_attempts
                )
                .where(AsyncRequestRow.webhook_status == "pending", AsyncRequestRow.webhook_next <= now)
                .limit(limit)
            ).all()
            ids = [r[0] for r in rows]
            if ids:  # taken: not handed out again while this delivery runs
                s.execute(update(AsyncRequestRow).where(AsyncRequestRow.id.in_(ids)).values(webhook_next=now + 60))
        return [Hook(r[0], r[1], r[2] or "", r[3] + 1) for r in rows]

    def hook_payload(self, request_id: str) -> bytes:
        with self.db.session() as s:
            row = s.get(AsyncRequestRow, request_id)
            if row is None:
                raise NotFound(f"no async request {request_id}")
            return _public(row).model_dump_json().encode()

    def hook_done(self, hook: Hook, error: str | None, now: float) -> None:
        if error is None:
            values: dict[str, Any] = {"webhook_status": "delivered", "webhook_error": None}
        elif hook.attempt >= WEBHOOK_ATTEMPTS:
            values = {"webhook_status": "failed", "webhook_error": error}
        else:
            values = {"webhook_next": now + backoff_s(hook.attempt, 2.0, 300.0), "webhook_error": error}
        with self.db.session() as s:
            s.execute(
                update(AsyncRequestRow).where(AsyncRequestRow.id == hook.id).values(webhook_attempts=hook.attempt, **values)
            )

    def prune(self) -> int:
        """Single requests finished before the retention, batches (with their lines) created
        before it, files past their expiry."""
        now = self.clock()
        cutoff = now - self.settings.async_retention_days * DAY_S
        with self.db.session() as s:
            gone = s.execute(
                delete(AsyncRequestRow).where(
                    AsyncRequestRow.batch_id.is_(None), AsyncRequestRow.status.not_in(OPEN), AsyncRequestRow.finished_at < cutoff
                )
            )
            old = select(BatchRow.id).where(BatchRow.status.not_in(BATCH_OPEN), BatchRow.created_at < cutoff)
            s.execute(delete(AsyncRequestRow).where(AsyncRequestRow.batch_id.in_(old)))
            s.execute(delete(BatchRow).where(BatchRow.id.in_(old)))
            s.execute(delete(FileRow).where(FileRow.expires_at < now))
        return int(getattr(gone, "rowcount", 0) or 0)

    def depths(self, endpoint_ids: Sequence[int] | None = None) -> dict[int, dict[str, Any]]:
        with self.db.session() as s:
            return queues(s, self.clock(), endpoint_ids)

    def named_depths(self) -> dict[tuple[str, str], dict[str, Any]]:
        """``depths`` keyed by (project name, endpoint name), for metrics."""
        d = self.depths()
        if not d:
            return {}
        with self.db.session() as s:
            rows = s.execute(
                select(EndpointRow.id, ProjectRow.name, EndpointRow.name)
                .join(ProjectRow, ProjectRow.id == EndpointRow.project_id)
                .where(EndpointRow.id.in_(list(d)))
            ).all()
        return {(project, name): d[ep] for ep, project, name in rows}

    # --- helpers ---------------------------------------------------------------------

    @staticmethod
    def _endpoint(s: Session, who: Principal, model: str, field: str = "model") -> EndpointRow:
        ep = s.scalar(
            select(EndpointRow).where(
                EndpointRow.project_id == who.project_id,
                EndpointRow.routing_key == model,
                EndpointRow.desired != Desired.DELETED.value,
            )
        )
        if ep is None:
            raise NotFound(f"the model {model[:200]!r} does not exist or you do not have access to it", field=field)
        return ep

    def _room(self, s: Session, ep: EndpointRow, n: int, field: str = "model") -> None:
        depth = s.scalar(select(func.count()).where(AsyncRequestRow.endpoint_id == ep.id, AsyncRequestRow.status.in_(OPEN)))
        if (depth or 0) + n > self.settings.async_max_depth:
            raise QueueFull(
                f"endpoint {ep.routing_key!r} has {depth} async requests waiting (at most {self.settings.async_max_depth}); "
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


def queues(s: Session, now: float, endpoint_ids: Sequence[int] | None = None) -> dict[int, dict[str, Any]]:
    """Per endpoint with open work: requests queued, running, and the oldest queued one's age (s)."""
    q = select(AsyncRequestRow.endpoint_id, AsyncRequestRow.status, func.count(), func.min(AsyncRequestRow.created_at)).where(
        AsyncRequestRow.status.in_(OPEN)
    )
    if endpoint_ids is not None:
        q = q.where(AsyncRequestRow.endpoint_id.in_(list(endpoint_ids)))
    out: dict[int, dict[str, Any]] = {}
    for ep, status, n, oldest in s.execute(q.group_by(AsyncRequestRow.endpoint_id, AsyncRequestRow.status)).all():
        d = out.setdefault(int(ep), {"queued": 0, "running": 0, "oldest_queued_s": None})
        d[status] = int(n)
        if status == QUEUED and oldest is not None:
            d["oldest_queued_s"] = round(now - float(oldest), 3)
    return out


def _json(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _public(r: AsyncRequestRow, window: datetime | None = None) -> AsyncPublic:
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
        response=_json(r.response),
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
