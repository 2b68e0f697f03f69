"""The dispatcher's side of the store: claim queued requests, record what a send came to
(once), retry, requeue after a crash, expire, finalise batches, prune (webhook deliveries:
``deliveries.py``).

A request's life: ``queued`` -> ``running`` (claimed: its attempt counted, a claim token
and a lease until the send must be over) -> ``succeeded`` / ``failed``, or back to
``queued`` (a retry, or its endpoint had no room). An answer is recorded only by the
update that finds the request still ``running`` under the claim token of the send that
got it: a send cut short by a crash, or one that outlived its lease, never records a
second answer.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from rota.config import Settings
from rota.domain.invocations import DONE, NOT_NOW, AsyncStatus, BatchStatus, backoff_s, error_code_of, outcome, output_line
from rota.services.async_depths import queues
from rota.services.async_store import BATCH_OPEN, DAY_S, OPEN, QUEUED, RUNNING, json_or_text, store_file
from rota.services.batch_loader import BatchLoader
from rota.services.deliveries import Deliveries, mark_due
from rota.store.async_tables import AsyncRequestRow, BatchRow, FileRow
from rota.store.names import endpoint_names

NOT_NOW_S = 0.5  # an endpoint without room is asked again this much later


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


@dataclass
class AsyncQueue(Deliveries):
    settings: Settings
    clock: Callable[[], float] = time.time
    loader: BatchLoader | None = None  # resumes batches whose lines did not all go in

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
                mark_due(s, now, AsyncRequestRow.id == c.id)
        return "done" if final else verdict

    def recover(self, now: float) -> int:
        """On election (the leader dispatches): what a previous leader was sending goes back
        to the queue, not counted as an attempt; a deposed one still sending records nothing."""
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
            mark_due(s, now, AsyncRequestRow.endpoint_id == endpoint_id)

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
            mark_due(s, now, AsyncRequestRow.status.in_([AsyncStatus.EXPIRED.value, AsyncStatus.FAILED.value]))
            cancelling = select(BatchRow.id).where(BatchRow.status.in_([BatchStatus.CANCELLING.value, BatchStatus.FAILED.value]))
            s.execute(  # lines of a cancelled or failed batch that came back to the queue (a retry) are not sent again
                update(AsyncRequestRow)
                .where(AsyncRequestRow.batch_id.in_(cancelling), AsyncRequestRow.status == QUEUED)
                .values(status=AsyncStatus.CANCELLED.value, finished_at=now)
            )
            for batch in s.scalars(
                select(BatchRow).where(BatchRow.status.in_([BatchStatus.IN_PROGRESS.value, BatchStatus.CANCELLING.value]))
            ).all():
                self._maybe_finalise(s, batch, now)
        if self.loader is not None:
            self.loader.resume_soon()

    def _maybe_finalise(self, s: Session, batch: BatchRow, now: float) -> None:
        if batch.loaded_at is None:  # its lines are still going in
            return
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
            line = output_line(rid, custom_id or "", code, json_or_text(response), error if status != "succeeded" else None)
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
        files = {
            f"{kind}_file_id": store_file(
                s,
                batch.project_id,
                "batch_output",
                f"{batch.id}_{kind}.jsonl",
                ("\n".join(lines) + "\n").encode(),
                now,
                self.settings.async_retention_days,
            ).id
            for kind, lines in (("output", out), ("error", err))
            if lines
        }
        if files:
            s.execute(
                update(BatchRow).where(BatchRow.id == batch.id).values(**files).execution_options(synchronize_session=False)
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
            names = endpoint_names(s, d)
        return {named: d[ep] for ep, named in names.items()}
