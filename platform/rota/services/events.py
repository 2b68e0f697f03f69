"""Events and status changes: the one place a task's or an endpoint's status changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from rota.domain.endpoints import Derived
from rota.domain.errors import InvalidTransition
from rota.domain.status import EventKind, TaskStatus, can_transition
from rota.store.tables import EndpointRow, EventRow, TaskRow, utcnow


def record(
    session: Session, subject: TaskRow | EndpointRow, kind: EventKind, message: str, data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> EventRow:  # fmt: skip
    """Write an event of a task or an endpoint."""
    ev = EventRow(project_id=subject.project_id, kind=kind.value, message=message, data=data or {}, at=at or utcnow())
    if isinstance(subject, EndpointRow):
        ev.endpoint_id, ev.endpoint_name = subject.id, subject.name
    else:
        ev.task_id, ev.task_name = subject.id, subject.name
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


def set_endpoint_status(session: Session, ep: EndpointRow, new: Derived, at: datetime) -> bool:
    """Show ``new`` on the endpoint; a change of status, phase or error is an event.

    Endpoint statuses are derived from what Ray Serve reports (``rota.domain.endpoints.derive``),
    not commanded, so any move is valid; what matters is that each one is recorded.
    """
    before = (ep.status, ep.phase, ep.error_code)
    after = (new.status.value, new.phase.value if new.phase else None, new.error_code.value if new.error_code else None)
    ep.message = new.message
    if before == after:
        return False
    ep.status, ep.phase, ep.error_code = after
    ep.updated_at = at
    text = new.status.value + (f" ({after[1]})" if after[1] else "")
    if new.error_code:
        text += f": {new.error_code.value}: {new.message}"
    data = {"from": before[0], "to": after[0], "phase": after[1], "error_code": after[2]}
    record(session, ep, EventKind.STATUS, text, data, at=at)
    return True
