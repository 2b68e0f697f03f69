"""Tasks: a schedule over an endpoint. Schemas per direction, statuses and their one
transition table.

A task's status is its schedule's lifecycle only; the health of what it runs is the
endpoint's (``rota.domain.status``). The only code that changes a task's status is
``rota.services.events.transition``, which checks ``can_transition`` and writes an event.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field, StrictBool, ValidationInfo, field_validator

from rota.domain.coldstart import ColdStartStats
from rota.domain.endpoints import EndpointBrief, Resources
from rota.domain.names import IDENT_PATTERN, NAME_PATTERN, Strict
from rota.domain.schedule import TaskType, get_timezone, parse_local_datetime, parse_time_of_day
from rota.domain.values import EnvMap, check_args_size

MAX_ENTRIES = 1440  # one a minute


class TaskStatus(str, Enum):
    IDLE = "idle"  # created or deactivated: no fires are scheduled
    ACTIVE = "active"  # fires are scheduled
    COMPLETED = "completed"  # a one-off that fired (its endpoint keeps what it set)
    MISSED = "missed"  # a one-off past its grace period; it never fires (PATCH and activate again)


_ALLOWED: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.IDLE: frozenset({TaskStatus.ACTIVE}),
    TaskStatus.ACTIVE: frozenset({TaskStatus.IDLE, TaskStatus.COMPLETED, TaskStatus.MISSED}),
    TaskStatus.COMPLETED: frozenset({TaskStatus.ACTIVE, TaskStatus.IDLE}),
    TaskStatus.MISSED: frozenset({TaskStatus.ACTIVE, TaskStatus.IDLE}),
}


def can_transition(old: TaskStatus, new: TaskStatus) -> bool:
    return new in _ALLOWED[old]


class ScheduleEntry(Strict):
    time: str = Field(max_length=32, description="daily: local time of day HH:MM; one_off: local date-time YYYY-MM-DDTHH:MM")
    min_replicas: int = Field(ge=0, le=10_000)
    max_replicas: int = Field(ge=1, le=10_000, description="at most ROTA_MAX_REPLICAS (default 10)")
    ready_by: bool | None = Field(
        None,
        description="a scale-up starts early by the measured cold start so min_replicas serve at this time (null: the task's)",
    )

    @field_validator("max_replicas")
    @classmethod
    def _max_at_least_min(cls, v: int, info: ValidationInfo) -> int:
        lo = info.data.get("min_replicas")
        if lo is not None and v < lo:
            raise ValueError(f"max_replicas ({v}) must be >= min_replicas ({lo})")
        return v


def validate_schedule(type_: TaskType | None, entries: list[ScheduleEntry]) -> list[ScheduleEntry]:
    if type_ is TaskType.ONE_OFF:
        if len(entries) != 1:
            raise ValueError(f"a one_off task has exactly one entry, got {len(entries)}")
        try:
            parse_local_datetime(entries[0].time)
        except ValueError as e:
            raise ValueError(f"entry 0 time: {e}") from None
    elif type_ is TaskType.DAILY:
        seen: dict[Any, int] = {}
        for i, entry in enumerate(entries):
            try:
                t = parse_time_of_day(entry.time)
            except ValueError as err:
                raise ValueError(f"entry {i} time: {err}") from None
            if t in seen:
                raise ValueError(f"entries {seen[t]} and {i} have the same time {entry.time}: daily times must be distinct")
            seen[t] = i
    return entries


class TaskCreate(Strict):
    """A schedule over an endpoint: an existing one (``endpoint``), or an application the
    task owns (``file_path``/``deployment_name``, created with it and deleted with it)."""

    # Field order matters: cross-field checks are field validators (so errors name a
    # field) and see only the fields declared before theirs.
    name: str = Field(pattern=NAME_PATTERN, description="unique in the project (and its own application's name)")
    file_path: str | None = Field(None, pattern=IDENT_PATTERN, description="a script in serve_apps/, without .py (e.g. serve)")
    deployment_name: str | None = Field(None, pattern=IDENT_PATTERN, description="the attribute the script exposes (e.g. app)")
    endpoint: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        validate_default=True,
        description="instead of file_path/deployment_name: an endpoint (id or name) whose replica bounds the schedule sets",
    )
    type: TaskType
    timezone: str = Field(max_length=64, description="IANA timezone name, e.g. Europe/Paris")
    schedule: list[ScheduleEntry] = Field(min_length=1, max_length=MAX_ENTRIES)
    ready_by: StrictBool = Field(False, description="the default of entries that do not say ready_by")
    args: dict[str, Any] = Field(default_factory=dict, description="arguments of the owned application")
    env: EnvMap = Field(default_factory=dict, description="environment variables of its replicas (write-only)")
    resources: Resources = Field(default_factory=Resources, validate_default=True)

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, v: str) -> str:
        get_timezone(v)
        return v

    @field_validator("schedule")
    @classmethod
    def _schedule_matches_type(cls, v: list[ScheduleEntry], info: ValidationInfo) -> list[ScheduleEntry]:
        return validate_schedule(info.data.get("type"), v)

    @field_validator("endpoint")
    @classmethod
    def _one_target(cls, v: str | None, info: ValidationInfo) -> str | None:
        app = info.data.get("file_path") or info.data.get("deployment_name")
        if v is not None and app:
            raise ValueError("give either endpoint or file_path/deployment_name, not both")
        if v is None and not (info.data.get("file_path") and info.data.get("deployment_name")):
            raise ValueError("give file_path and deployment_name (an application), or endpoint")
        return v

    @field_validator("args")
    @classmethod
    def _args_size(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_args_size(v)

    @field_validator("resources")
    @classmethod
    def _app_settings_need_an_app(cls, v: Resources, info: ValidationInfo) -> Resources:
        if info.data.get("endpoint") and (info.data.get("args") or info.data.get("env") or v.model_dump(exclude_none=True)):
            raise ValueError("args, env and resources belong to the endpoint, not to a task driving it")
        return v

    @property
    def owns_application(self) -> bool:
        return self.endpoint is None


class TaskManifest(TaskCreate):
    """A task in a ``schedules/*.yaml`` manifest: a TaskCreate plus whether it should be active."""

    active: bool | None = Field(None, description="activate (true) or deactivate (false) after applying")

    def to_create(self) -> TaskCreate:
        return TaskCreate.model_validate(self.model_dump(exclude={"active"}))


class TaskUpdate(Strict):
    """PATCH: only the fields sent change; the merged task is validated as a whole.
    ``env`` merges by name (a null value removes one)."""

    file_path: str | None = Field(None, pattern=IDENT_PATTERN)
    deployment_name: str | None = Field(None, pattern=IDENT_PATTERN)
    endpoint: str | None = Field(None, min_length=1, max_length=100)
    type: TaskType | None = None
    timezone: str | None = Field(None, max_length=64)
    schedule: list[ScheduleEntry] | None = Field(None, min_length=1, max_length=MAX_ENTRIES)
    ready_by: StrictBool | None = None
    args: dict[str, Any] | None = None
    env: dict[str, str | None] | None = None
    resources: Resources | None = None

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, v: str | None) -> str | None:
        if v is not None:
            get_timezone(v)
        return v


class FireTime(BaseModel):
    utc: datetime
    local: str = Field(description="ISO local time with its UTC offset")
    entry: int
    min_replicas: int
    max_replicas: int
    ready_by: datetime | None = Field(None, description="a ready_by scale-up: when its replicas should serve (UTC)")
    ready_by_local: str | None = None
    note: str | None = Field(None, description="why it fires early, in words")


class RunPublic(BaseModel):
    scheduled_at: datetime
    fired_at: datetime
    entry: int
    min_replicas: int
    max_replicas: int
    trigger: str = Field(description="schedule (on time) or catch_up (after a restart)")
    ready_state: str | None = Field(
        None, description="a ready_by scale-up: pending, on_time, late (not yet), ready_late or never (superseded first)"
    )
    ready_at: datetime | None = Field(None, description="when its min_replicas were first seen serving")
    lead_s: float | None = Field(None, description="how early it fired")


class Readiness(BaseModel):
    """Whether ready_by windows were ready at their written time (the last 30)."""

    windows: int
    on_time: int
    rate: float | None = Field(None, description="on_time / windows")


class TaskPublic(BaseModel):
    id: int
    name: str
    project: str
    endpoint: EndpointBrief | None = Field(description="what the schedule drives, with its status (None: it is gone)")
    owns_endpoint: bool = Field(description="the endpoint is the task's own application (deleted with it)")
    # The owned application's settings (None when the task drives another endpoint).
    file_path: str | None = None
    deployment_name: str | None = None
    args: dict[str, Any] | None = None
    env: dict[str, str] | None = Field(None, description="names only: values are write-only")
    resources: Resources | None = None
    type: TaskType
    timezone: str
    schedule: list[ScheduleEntry]
    status: TaskStatus
    status_reason: str | None = None
    created_at: datetime
    updated_at: datetime
    activated_at: datetime | None = None
    next_fire_at: datetime | None = Field(None, description="UTC")
    next_fire_local: str | None = Field(None, description="in the task's timezone")
    next_fires: list[FireTime] = Field(default_factory=list)
    last_run: RunPublic | None = None
    ready_by: bool = False
    cold_start: ColdStartStats | None = Field(None, description="its endpoint's cold starts and the lead (ready_by tasks)")
    readiness: Readiness | None = None
