"""Webhook deliveries, the store's side: which finished requests are due for delivery,
what is delivered, and what a delivery came to (retried with backoff, then failed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from rota.domain.errors import NotFound
from rota.domain.invocations import backoff_s
from rota.services.async_store import public
from rota.store.async_tables import AsyncRequestRow
from rota.store.db import Database

WEBHOOK_ATTEMPTS = 6


@dataclass(frozen=True)
class Hook:
    id: str
    project_id: int
    url: str
    attempt: int


@dataclass
class Deliveries:
    db: Database

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
            return public(row).model_dump_json().encode()

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


def mark_due(s: Session, now: float, *where: Any) -> None:
    """Requests that ended at ``now`` (and match ``where``) with a webhook: due for delivery."""
    s.execute(
        update(AsyncRequestRow)
        .where(
            *where,
            AsyncRequestRow.finished_at == now,
            AsyncRequestRow.webhook_url.is_not(None),
            AsyncRequestRow.webhook_status.is_(None),
        )
        .values(webhook_status="pending", webhook_next=now)
    )
