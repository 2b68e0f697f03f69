"""Schemas per direction: what comes in (create, partial update, manifest) and what goes out.

The same models validate the REST API, the CLI and ``schedules/*.yaml``. They check
shape and values only; whether ``file_path``/``deployment_name`` name a real Ray Serve
application is checked by ``rota.serve.apps`` (it reads the script).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from rota.domain.schedule import get_timezone, parse_local_datetime, parse_time_of_day
from rota.domain.status import AppStatus, EventKind, TaskStatus, TaskType

NAME_PATTERN = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
MAX_ID = 2**63 - 1  # ids are 64-bit integers in every store


def by_id_or_name(ref: str | int) -> tuple[int | None, str]:
    """A path reference: an id when it is all digits (and fits an id), else a name."""
    text = str(ref)
    return (int(text) if text.isdigit() and int(text) <= MAX_ID else None), text


# Task names become route prefixes /<name> on the Serve port, next to the gateway's.
RESERVED_NAMES = frozenset({"v1", "ep", "api", "internal", "healthz"})
IDENT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(_Strict):
    """Resources of each replica (Ray actor options)."""

    num_cpus: float | None = Field(default=None, gt=0, description="CPUs per replica")
    num_gpus: float | None = Field(default=None, ge=0, description="GPUs per replica")
    accelerator_type: str | None = Field(default=None, min_length=1, description="e.g. A100, L4, H100")


class ScheduleEntry(_Strict):
    time: str = Field(description="daily: local time of day HH:MM; one_off: local date-time YYYY-MM-DDTHH:MM")
    min_replicas: int = Field(ge=0)
    max_replicas: int = Field(ge=1)

    @field_validator("max_replicas")
    @classmethod
    def _max_at_least_min(cls, v: int, info: ValidationInfo) -> int:
        lo = info.data.get("min_replicas")
        if lo is not None and v < lo:
            raise ValueError(f"max_replicas ({v}) must be >= min_replicas ({lo})")
        return v


class _TaskFields(_Strict):
    """Fields shared by create and manifest; every one validated on its own."""

    name: str = Field(
        pattern=NAME_PATTERN,
        description="unique in the project, DNS-label style (lowercase letters, digits, '-'; starts with a "
        "letter); names the Ray Serve application and its route prefix /<name>",
    )
    file_path: str | None = Field(default=None, pattern=IDENT_PATTERN, description="a script in serve_apps/, without .py (e.g. serve)")
    deployment_name: str | None = Field(default=None, pattern=IDENT_PATTERN, description="the attribute the script exposes (e.g. app)")
    endpoint: str | None = Field(
        default=None, min_length=1, validate_default=True,
        description="instead of file_path/deployment_name: an endpoint (id or name) whose replica bounds the schedule sets",
    )  # fmt: skip
    type: TaskType
    timezone: str = Field(description="IANA timezone name, e.g. Europe/Paris")
    schedule: list[ScheduleEntry] = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict, description="arguments passed to the application")
    env: dict[str, str] = Field(default_factory=dict, description="environment variables of the replicas")
    resources: Resources = Field(default_factory=Resources, validate_default=True)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v in RESERVED_NAMES:
            raise ValueError(f"{v!r} is reserved (the OpenAI base URL and Rota's routes use it)")
        return v

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, v: str) -> str:
        get_timezone(v)
        return v

    @field_validator("schedule")
    @classmethod
    def _schedule_matches_type(cls, v: list[ScheduleEntry], info: ValidationInfo) -> list[ScheduleEntry]:
        return validate_schedule(info.data.get("type"), v)

    # Cross-field checks are field validators (not model validators) so that errors name a field.
    @field_validator("endpoint")
    @classmethod
    def _one_target(cls, v: str | None, info: ValidationInfo) -> str | None:
        app = info.data.get("file_path") or info.data.get("deployment_name")
        if v is not None and app:
            raise ValueError("give either endpoint or file_path/deployment_name, not both")
        if v is None and not (info.data.get("file_path") and info.data.get("deployment_name")):
            raise ValueError("give file_path and deployment_name (an application), or endpoint")
        return v

    @field_validator("resources")
    @classmethod
    def _app_settings_need_an_app(cls, v: Resources, info: ValidationInfo) -> Resources:
        if info.data.get("endpoint") and (info.data.get("args") or info.data.get("env") or v.model_dump(exclude_none=True)):
            raise ValueError("args, env and resources belong to the endpoint, not to a task driving it")
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
        seen: dict = {}
        for i, e in enumerate(entries):
            try:
                t = parse_time_of_day(e.time)
            except ValueError as err:
                raise ValueError(f"entry {i} time: {err}") from None
            if t in seen:
                raise ValueError(f"entries {seen[t]} and {i} have the same time {e.time}: daily times must be distinct")
            seen[t] = i
    return entries


class TaskCreate(_TaskFields):
    pass


class TaskManifest(_TaskFields):
    """A task in a ``schedules/*.yaml`` manifest: a TaskCreate plus whether it should be active."""

    active: bool | None = Field(default=None, description="activate (true) or deactivate (false) after applying")

    def to_create(self) -> TaskCreate:
        return TaskCreate.model_validate(self.model_dump(exclude={"active"}))


class TaskUpdate(_Strict):
    """PATCH: only the fields sent change. The merged task is validated as a whole."""

    file_path: str | None = Field(default=None, pattern=IDENT_PATTERN)
    deployment_name: str | None = Field(default=None, pattern=IDENT_PATTERN)
    endpoint: str | None = Field(default=None, min_length=1)
    type: TaskType | None = None
    timezone: str | None = None
    schedule: list[ScheduleEntry] | None = Field(default=None, min_length=1)
    args: dict[str, Any] | None = None
    env: dict[str, str] | None = None
    resources: Resources | None = None

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, v: str | None) -> str | None:
        if v is not None:
            get_timezone(v)
        return v


# ---------------------------------------------------------------- responses


class FireTime(BaseModel):
    utc: datetime
    local: str = Field(description="ISO local time with its UTC offset")
    entry: int
    min_replicas: int
    max_replicas: int


class RunPublic(BaseModel):
    scheduled_at: datetime
    fired_at: datetime
    entry: int
    min_replicas: int
    max_replicas: int
    trigger: str = Field(description="schedule (on time) or catch_up (after a restart)")


class AppPublic(BaseModel):
    name: str
    import_path: str
    route_prefix: str
    url: str
    status: AppStatus
    message: str | None = None
    desired_min_replicas: int | None = None
    desired_max_replicas: int | None = None
    target_replicas: int | None = None
    running_replicas: int | None = None
    replica_ids: list[str] = Field(default_factory=list)
    observed_at: datetime | None = Field(default=None, description="when Rota saw this state appear")


class EndpointRef(BaseModel):
    id: int
    name: str
    routing_key: str


class TaskPublic(BaseModel):
    id: int
    name: str
    project: str
    file_path: str | None
    deployment_name: str | None
    endpoint: EndpointRef | None = Field(default=None, description="the endpoint this task drives, if any")
    type: TaskType
    timezone: str
    schedule: list[ScheduleEntry]
    args: dict[str, Any]
    env: dict[str, str]
    resources: Resources
    status: TaskStatus
    status_reason: str | None = None
    created_at: datetime
    updated_at: datetime
    activated_at: datetime | None = None
    next_fire_at: datetime | None = Field(default=None, description="UTC")
    next_fire_local: str | None = Field(default=None, description="in the task's timezone")
    next_fires: list[FireTime] = Field(default_factory=list)
    last_run: RunPublic | None = None
    app: AppPublic | None = Field(default=None, description="the task's own application (none when it drives an endpoint)")


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


class Page(BaseModel):
    items: list
    total: int
    limit: int
    offset: int
