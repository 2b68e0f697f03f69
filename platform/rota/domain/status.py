"""Task and application statuses, and the one table of allowed task transitions.

The only code that changes a task's status is ``rota.services.events.transition``,
which checks ``can_transition`` and writes an event for every change.
"""

from __future__ import annotations

from enum import Enum


class TaskType(str, Enum):
    ONE_OFF = "one_off"
    DAILY = "daily"


class TaskStatus(str, Enum):
    IDLE = "idle"  # created or deactivated: no fires are scheduled
    ACTIVE = "active"  # fires are scheduled
    COMPLETED = "completed"  # a one-off task that fired; its application keeps running
    FAILED = "failed"  # its application failed to deploy, or a one-off fire was missed

    @classmethod
    def schedulable(cls) -> frozenset["TaskStatus"]:
        """Statuses in which future fires are scheduled."""
        return frozenset({cls.ACTIVE})


class AppStatus(str, Enum):
    """The state of a task's Ray Serve application as Rota last observed it."""

    NOT_DEPLOYED = "NOT_DEPLOYED"  # no fire yet (or removed)
    DEPLOYING = "DEPLOYING"
    RUNNING = "RUNNING"
    UNHEALTHY = "UNHEALTHY"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    DELETING = "DELETING"
    UNREACHABLE = "UNREACHABLE"  # Ray could not be reached: last known state unknown

    @classmethod
    def failed(cls) -> frozenset["AppStatus"]:
        return frozenset({cls.DEPLOY_FAILED, cls.UNHEALTHY})


_ALLOWED: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.IDLE: frozenset({TaskStatus.ACTIVE}),
    TaskStatus.ACTIVE: frozenset({TaskStatus.IDLE, TaskStatus.COMPLETED, TaskStatus.FAILED}),
    TaskStatus.COMPLETED: frozenset({TaskStatus.ACTIVE, TaskStatus.IDLE, TaskStatus.FAILED}),
    TaskStatus.FAILED: frozenset({TaskStatus.ACTIVE, TaskStatus.IDLE, TaskStatus.COMPLETED}),
}


def can_transition(old: TaskStatus, new: TaskStatus) -> bool:
    return new in _ALLOWED[old]


class EventKind(str, Enum):
    """What the "deployment events" of a task or an endpoint can say."""

    CREATED = "created"
    UPDATED = "updated"
    ACTIVATED = "activated"
    DEACTIVATED = "deactivated"
    FIRED = "fired"
    CAUGHT_UP = "caught_up"
    MISSED = "missed"
    COMPLETED = "completed"
    DEPLOYING = "deploying"
    SCALED = "scaled"
    RUNNING = "running"
    FAILED = "failed"
    RECOVERED = "recovered"
    UNREACHABLE = "unreachable"
    DELETED = "deleted"
    REMOVED = "removed"
    STATUS = "status"  # an endpoint's status or phase changed
    STOP = "stop"
    START = "start"
    SCHEDULED = "scheduled"  # a task's fire set an endpoint's replica bounds
