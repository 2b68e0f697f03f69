"""Events and status changes: the one place a task's or an endpoint's status changes,
and the project's event log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from rota.domain.errors import Conflict
from rota.domain.events import EventKind, EventPublic
from rota.domain.status import Derived
from rota.domain.tasks import TaskStatus, can_transition
from rota.services import coldstarts
from rota.services.auth import Principal
from rota.store.db import Database
from rota.store.tables import EndpointRow, EventRow, TaskRow, utcnow


def record(
    s: Session,
    subject: TaskRow | EndpointRow,
    kind: EventKind,
    message: str,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> EventRow:
    """Write an event of a task or an endpoint."""
    ev = EventRow(project_id=subject.project_id, kind=kind.value, message=message, data=data or {}, at=at or utcnow())
    if isinstance(subject, EndpointRow):
        ev.endpoint_id, ev.endpoint_name = subject.id, subject.name
    else:
        ev.task_id, ev.task_name = subject.id, subject.name
    s.add(ev)
    return ev


def transition(
    s: Session,
    task: TaskRow,
    new: TaskStatus,
    kind: EventKind,
    message: str,
    reason: str | None = None,
    at: datetime | None = None,
) -> None:
    """Move ``task`` to ``new`` (validated against the transition table) and write the event."""
    old = TaskStatus(task.status)
    if old is not new and not can_transition(old, new):
        raise Conflict(f"task {task.name} is {old.value}; it cannot become {new.value}", field="status")
    task.status = new.value
    task.status_reason = reason
    task.updated_at = at or utcnow()
    record(s, task, kind, message, {"from": old.value, "to": new.value}, at=at)


def set_endpoint_status(s: Session, ep: EndpointRow, new: Derived, at: datetime) -> bool:
    """Show ``new`` on the endpoint; a change of status, phase or error is an event.

    Statuses are derived from what Ray Serve reports (``rota.domain.status.derive``), not
    commanded, so any move is valid; what matters is that each one is recorded.
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
    record(s, ep, EventKind.STATUS, text, data, at=at)
    coldstarts.note_status(s, ep, before[0], after[0], at)
    return True


def public(rows: list[EventRow]) -> list[EventPublic]:
    return [
        EventPublic(
            id=e.id,
            task_id=e.task_id,
            task_name=e.task_name,
            endpoint_id=e.endpoint_id,
            endpoint_name=e.endpoint_name,
            kind=EventKind(e.kind),
            message=e.message,
            data=e.data or {},
            at=e.at,
        )
        for e in rows
    ]


@dataclass
class EventService:
    """The project's event log: deleted tasks' and endpoints' events included."""

    db: Database

    def list(
        self,
        who: Principal,
        after_id: int = 0,
        limit: int = 1000,
        task_name: str | None = None,
        endpoint_name: str | None = None,
        task_id: int | None = None,
        endpoint_id: int | None = None,
        newest_first: bool = False,
    ) -> list[EventPublic]:
        cond: ColumnElement[bool] = (EventRow.project_id == who.project_id) & (EventRow.id > after_id)
        for column, value in (
            (EventRow.task_name, task_name),
            (EventRow.endpoint_name, endpoint_name),
            (EventRow.task_id, task_id),
            (EventRow.endpoint_id, endpoint_id),
        ):
            if value is not None:
                cond = cond & (column == value)
        with self.db.session() as s:
            order = EventRow.id.desc() if newest_first else EventRow.id
            return public(list(s.scalars(select(EventRow).where(cond).order_by(order).limit(limit)).all()))
