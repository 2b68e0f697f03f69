"""What the async callers' side shares: statuses, the store's helpers (an endpoint by
routing key, its queue's room, its next scheduled window), files as stored, and a
request's public form. ``invocations.py`` (single requests) and ``batches.py`` (files
and batches) build on it; the dispatcher's side is ``async_queue.py``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rota.config import Settings
from rota.domain.endpoints import Desired
from rota.domain.errors import Conflict, InvalidInput, NotFound, RotaError
from rota.domain.invocations import AsyncPublic, AsyncStatus, BatchStatus, FilePublic, new_id
from rota.domain.schedule import next_window
from rota.domain.tasks import TaskStatus
from rota.services import views
from rota.services.auth import Principal
from rota.store.async_tables import AsyncRequestRow, BatchRow, FileRow
from rota.store.db import Database
from rota.store.tables import EndpointRow, TaskRow

DAY_S = 86_400.0
QUEUED, RUNNING = AsyncStatus.QUEUED.value, AsyncStatus.RUNNING.value
OPEN = (QUEUED, RUNNING)
BATCH_OPEN = (BatchStatus.IN_PROGRESS.value, BatchStatus.CANCELLING.value, BatchStatus.VALIDATING.value)


class QueueFull(RotaError):
    code = "queue_full"
    status_code = 429


@dataclass
class Depths:
    """Each endpoint's open async requests, counted in the store at most every ``fresh_s``;
    in between, the last count plus what this process queued since. It only over-counts
    (answers lower the real depth; other processes' submits are seen at the next count), so
    a submit near the limit is decided on an exact count. Counting at every submit cost
    a scan of the whole queue each: the deeper the queue, the slower the submits."""

    fresh_s: float = 1.0
    _seen: dict[int, tuple[float, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def estimate(self, s: Session, ep_id: int) -> int:
        with self._lock:
            at, depth = self._seen.get(ep_id, (-1e18, 0))
        return depth if time.monotonic() - at < self.fresh_s else self.count(s, ep_id)

    def count(self, s: Session, ep_id: int) -> int:
        """Open requests in the store, and the lines of batches still going in that are
        not there yet (they were admitted whole)."""
        at = time.monotonic()
        depth = s.scalar(select(func.count()).where(AsyncRequestRow.endpoint_id == ep_id, AsyncRequestRow.status.in_(OPEN))) or 0
        loading = s.execute(
            select(BatchRow.id, BatchRow.total).where(BatchRow.endpoint_id == ep_id, BatchRow.loaded_at.is_(None))
        ).all()
        if loading:
            stored = s.scalar(select(func.count()).where(AsyncRequestRow.batch_id.in_([b for b, _ in loading]))) or 0
            depth += sum(total for _, total in loading) - stored
        with self._lock:
            self._seen[ep_id] = (at, depth)
        return depth

    def took(self, ep_id: int, n: int) -> None:
        with self._lock:
            at, depth = self._seen.get(ep_id, (-1e18, 0))
            self._seen[ep_id] = (at, depth + n)


@dataclass
class AsyncStore:
    db: Database
    settings: Settings
    clock: Callable[[], float] = time.time
    nudge: Callable[[], None] = lambda: None  # there is new work: the dispatcher looks now
    depths: Depths = field(default_factory=Depths)

    @staticmethod
    def _endpoint_key(s: Session, who: Principal, model: str, field: str = "model") -> tuple[int, str, dict[str, Any]]:
        """The id, routing key and async settings of the caller's endpoint ``model`` (plain
        columns, one query: every submit looks it up)."""
        row = s.execute(
            select(EndpointRow.id, EndpointRow.routing_key, EndpointRow.async_settings).where(
                EndpointRow.project_id == who.project_id,
                EndpointRow.routing_key == model,
                EndpointRow.desired != Desired.DELETED.value,
            )
        ).first()
        if row is None:
            raise NotFound(f"the model {model[:200]!r} does not exist or you do not have access to it", field=field)
        stored = row[2] if isinstance(row[2], dict) else {}
        return int(row[0]), str(row[1]), stored

    def _room(self, s: Session, ep_id: int, routing_key: str, stored: dict[str, Any], n: int, field: str = "model") -> None:
        """``n`` more requests fit in the endpoint's async queue: it is on (else 409) and not
        full (its own max_depth, which only lowers ROTA_ASYNC_MAX_DEPTH; else 429)."""
        if stored.get("enabled") is False:
            raise Conflict(f"endpoint {routing_key!r} takes no async requests (its async_invocations are off)", field=field)
        own = stored.get("max_depth")
        limit = min(self.settings.async_max_depth, own) if isinstance(own, int) and own > 0 else self.settings.async_max_depth
        depth = self.depths.estimate(s, ep_id)
        if depth + n > limit:
            depth = self.depths.count(s, ep_id)  # near the limit: the exact figure decides
            if depth + n > limit:
                raise QueueFull(
                    f"endpoint {routing_key!r} has {depth} async requests waiting (at most {limit}); retry later", field=field
                )
        self.depths.took(ep_id, n)

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
        return at

    @staticmethod
    def _request(s: Session, who: Principal, request_id: str) -> AsyncRequestRow:
        return owned(s, who, AsyncRequestRow, request_id, "async request")


Row = TypeVar("Row", AsyncRequestRow, FileRow, BatchRow)


def owned(s: Session, who: Principal, table: type[Row], key: str, what: str, field: str = "id") -> Row:
    """The caller's project's row with this id, else a 404 (another project's too)."""
    row = s.get(table, key[:40])
    if row is None or row.project_id != who.project_id:
        raise NotFound(f"no {what} {key[:64]!r}", field=field)
    return row


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


def file_public(r: FileRow) -> FilePublic:
    return FilePublic(
        id=r.id,
        bytes=r.size,
        created_at=int(r.created_at),
        filename=r.filename,
        purpose=r.purpose,
        expires_at=None if r.expires_at is None else int(r.expires_at),
    )
