"""How full each endpoint's async queue is: requests queued and running, the oldest
queued one's age, and those answered in the last minute (read by the endpoints' views,
the dispatcher's queue and the metrics)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rota.domain.invocations import AsyncStatus
from rota.services.async_store import OPEN, QUEUED
from rota.store.async_tables import AsyncRequestRow

EMPTY_QUEUE: dict[str, Any] = {"queued": 0, "running": 0, "oldest_queued_s": None, "done_last_min": 0}
ANSWERED = (AsyncStatus.SUCCEEDED.value, AsyncStatus.FAILED.value)


def queues(s: Session, now: float, endpoint_ids: Sequence[int] | None = None) -> dict[int, dict[str, Any]]:
    """Per endpoint with open work or work done in the last minute: requests queued,
    running, the oldest queued one's age (s), and how many were answered (succeeded or
    failed) in the last 60 s: its throughput."""
    open_ = select(AsyncRequestRow.endpoint_id, AsyncRequestRow.status, func.count(), func.min(AsyncRequestRow.created_at)).where(
        AsyncRequestRow.status.in_(OPEN)
    )
    done = select(AsyncRequestRow.endpoint_id, func.count()).where(
        AsyncRequestRow.finished_at >= now - 60, AsyncRequestRow.status.in_(ANSWERED)
    )
    if endpoint_ids is not None:
        open_ = open_.where(AsyncRequestRow.endpoint_id.in_(list(endpoint_ids)))
        done = done.where(AsyncRequestRow.endpoint_id.in_(list(endpoint_ids)))
    out: dict[int, dict[str, Any]] = {}
    for ep, status, n, oldest in s.execute(open_.group_by(AsyncRequestRow.endpoint_id, AsyncRequestRow.status)).all():
        d = out.setdefault(int(ep), dict(EMPTY_QUEUE))
        d[status] = int(n)
        if status == QUEUED and oldest is not None:
            d["oldest_queued_s"] = round(now - float(oldest), 3)
    for ep, n in s.execute(done.group_by(AsyncRequestRow.endpoint_id)).all():
        out.setdefault(int(ep), dict(EMPTY_QUEUE))["done_last_min"] = int(n)
    return out
