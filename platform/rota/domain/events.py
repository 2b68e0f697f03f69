"""The one event vocabulary of tasks and endpoints (the "Deployment events" tab)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field


class EventKind(str, Enum):
    # a task's or an endpoint's own lifecycle
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    # a task's schedule
    ACTIVATED = "activated"
    DEACTIVATED = "deactivated"
    FIRED = "fired"  # on time
    CAUGHT_UP = "caught_up"  # after a restart or a lost job
    MISSED = "missed"  # a one-off past its grace period
    COMPLETED = "completed"  # a one-off fired
    READY = "ready"  # a ready_by scale-up was (or was not) serving at its written time
    # an endpoint
    SCHEDULED = "scheduled"  # a task's fire set its replica bounds
    DEPLOYING = "deploying"  # Ray Serve took its application (first deploy or redeploy)
    SCALED = "scaled"  # Ray Serve took new bounds, in place
    STATUS = "status"  # its derived status, phase or error changed
    STOP = "stop"
    START = "start"


class EventPublic(BaseModel):
    id: int
    task_id: int | None = None
    task_name: str | None = None
    endpoint_id: int | None = None
    endpoint_name: str | None = None
    kind: EventKind
    message: str
    data: dict[str, Any] = Field(default_factory=dict)
    at: datetime
