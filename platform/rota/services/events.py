"""Events and status transitions: the one place a task's status changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from rota.domain.errors import InvalidTransition
from rota.domain.status import EventKind, TaskStatus, can_transition
from rota.store.tables import EventRow, TaskRow, utcnow


def record(
    session: Session, task: TaskRow, kind: EventKind, message: str, data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> EventRow:  # fmt: skip
    ev = EventRow(task_id=task.id, task_name=task.name, kind=kind.value, message=message, data=data or {}, at=at or utcnow())
    session.add(ev)
    return ev


def transition(
    session: Session, task: TaskRow, new: TaskStatus, kind: EventKind, message: str, reason: str | None = None,
    data: dict[str, Any] | None = None, at: datetime | None = None,
) -> None:  # fmt: skip
    """Move ``task`` to ``new`` (validated against the transition table) and write the event."""
    old = TaskStatus(task.status)
    if old is not new and not can_transition(old, new):
        raise InvalidTransition(f"task {task.name} is {old.value}; it cannot become {new.value}", field="status")
    task.status = new.value
    task.status_reason = reason
    task.updated_at = at or utcnow()
    record(session, task, kind, message, {"from": old.value, "to": new.value, **(data or {})}, at=at)
