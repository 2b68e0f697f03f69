"""Async requests as callers see them: submit, read, list and cancel, by project only
(files and batches: ``batches.py``; the dispatcher's side of the store: ``async_queue.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, or_, select, update

from rota.domain.errors import Conflict
from rota.domain.invocations import AsyncPage, AsyncPublic, AsyncStatus, new_id, submission
from rota.services.async_store import DAY_S, QUEUED, public
from rota.services.auth import Principal
from rota.services.batches import BatchService
from rota.services.group_commit import GroupCommit
from rota.store.async_tables import AsyncRequestRow
from rota.store.tables import EndpointRow


@dataclass
class InvocationService(BatchService):
    """The async callers' service: single requests here, files and batches inherited."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.submits = GroupCommit(self.db, AsyncRequestRow)

    def submit(self, who: Principal, route: str, raw: bytes) -> AsyncPublic:
        sub = submission(raw, route, self.settings.async_max_body_bytes)
        now = self.clock()
        with self.db.session() as s:
            ep_id, key, stored = self._endpoint_key(s, who, sub.model)
            window = self._window(s, s.get(EndpointRow, ep_id), now) if sub.run_in_window else None
            self._room(s, ep_id, key, stored, 1)
        values = dict(
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
        self.submits.write(values)  # with the other submits of this moment, in one transaction
        self.nudge()
        return public(AsyncRequestRow(**values), window)

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
