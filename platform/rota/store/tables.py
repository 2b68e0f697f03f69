"""ORM rows. Kept apart from the API schemas (``rota.domain``); the async invocations'
rows are in ``async_tables.py`` (on the same base, so in the same metadata)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from rota.store.base import DEFAULT_PROJECT_ID, Base, UTCDateTime, utcnow


class ProjectRow(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    request_log_retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: the default
    request_log: Mapped[bool] = mapped_column(Boolean, default=True)  # False: its calls are not recorded
    prices: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)  # over the price book
    # Webhook signing secrets once rotated (encrypted); None: derived from the secret key.
    webhook_secret: Mapped[str | None] = mapped_column(Text, nullable=True)
    webhook_secret_previous: Mapped[str | None] = mapped_column(Text, nullable=True)
    webhook_secret_previous_until: Mapped[float | None] = mapped_column(Float, nullable=True)


class ApiKeyRow(Base):
    """An API key, stored as its SHA-256 only; ``prefix`` is what lists show."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(Integer, index=True)
    name: Mapped[str] = mapped_column(String(63))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sessions_after: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # console sign-out


class EndpointRow(Base):
    """An endpoint: one Ray Serve application, reached by its routing key.

    ``desired`` (running, stopped, deleted) and the bounds are what was asked for;
    ``status`` and ``phase`` are derived from what Ray Serve reports, by the reconciler only.
    """

    __tablename__ = "endpoints"
    __table_args__ = (
        UniqueConstraint("project_id", "name", name="uq_endpoint_project_name"),
        UniqueConstraint("project_id", "routing_key", name="uq_endpoint_project_routing_key"),
        UniqueConstraint("app_name", name="uq_endpoint_app_name"),
        UniqueConstraint("route_prefix", name="uq_endpoint_route_prefix"),
        {"sqlite_autoincrement": True},  # ids are never reused after a delete
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(Integer, index=True)
    name: Mapped[str] = mapped_column(String(63))
    routing_key: Mapped[str] = mapped_column(String(96))
    kind: Mapped[str] = mapped_column(String(16))
    owner_task_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    template: Mapped[str | None] = mapped_column(String(63), nullable=True)
    flavor: Mapped[str | None] = mapped_column(String(32), nullable=True)
    gpu_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    gpu_count: Mapped[int] = mapped_column(Integer, default=0)
    model: Mapped[str | None] = mapped_column(Text, nullable=True)
    revision: Mapped[str | None] = mapped_column(String(128), nullable=True)
    file_path: Mapped[str] = mapped_column(String(100))
    deployment_name: Mapped[str] = mapped_column(String(100))
    ingress: Mapped[str] = mapped_column(String(255))
    # The application's args (without its token) and replica resources, resolved from
    # template + flavor + engine, or a custom application's own.
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    resources: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    engine: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    scaling: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    async_settings: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)  # AsyncSettings
    env: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # name -> encrypted value
    app_name: Mapped[str] = mapped_column(String(128))  # Ray Serve's: generated, never a user's name
    route_prefix: Mapped[str] = mapped_column(String(128))
    token: Mapped[str] = mapped_column(Text)  # encrypted; the application requires it on every route
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_arg: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the arg the application takes it as
    per_replica: Mapped[int] = mapped_column(Integer, default=5)  # the application's max_ongoing_requests
    desired: Mapped[str] = mapped_column(String(16), default="running")
    # Replica bounds written by the fires of a task driving this endpoint (None: its scaling).
    scheduled_min: Mapped[int | None] = mapped_column(Integer, nullable=True)
    scheduled_max: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Bumped by a model, engine, args or env change (replicas roll); scaling changes do not bump it.
    generation: Mapped[int] = mapped_column(Integer, default=1)
    ready_generation: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The bounds Ray Serve last took (for "scaled a -> b" events).
    applied_min: Mapped[int | None] = mapped_column(Integer, nullable=True)
    applied_max: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The settings Ray Serve was last seen running (domain.specs.settings_mark): the status
    # describes the current settings only when it equals the current mark.
    taken_mark: Mapped[str | None] = mapped_column(String(96), nullable=True)

    status: Mapped[str] = mapped_column(String(16), index=True)
    phase: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reported_phase: Mapped[str | None] = mapped_column(String(32), nullable=True)  # what a starting replica said
    error_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    target_replicas: Mapped[int | None] = mapped_column(Integer, nullable=True)
    replica_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TaskRow(Base):
    """A schedule over an endpoint (its own application, or another endpoint)."""

    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_task_project_name"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(Integer, index=True)
    name: Mapped[str] = mapped_column(String(63), index=True)
    endpoint_id: Mapped[int] = mapped_column(Integer, index=True)
    type: Mapped[str] = mapped_column(String(16))
    timezone: Mapped[str] = mapped_column(String(64))
    schedule: Mapped[list[Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    # Fires count from here: set on activation and when an active task's schedule changes,
    # so neither applies entries that fell due before it.
    due_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ready_by: Mapped[bool] = mapped_column(Boolean, default=False)  # entries that do not say are ready_by


class RunRow(Base):
    """One applied fire. Unique on (task, scheduled instant): a fire applies exactly once."""

    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("task_id", "scheduled_at", name="uq_run_task_scheduled"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(Integer, index=True)
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    entry: Mapped[int] = mapped_column(Integer)
    min_replicas: Mapped[int] = mapped_column(Integer)
    max_replicas: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(16))
    # A ready_by scale-up: fired early at ``fired_at``; ``scheduled_at`` is when its
    # ``min_replicas`` should serve. ``ready_state``: pending (before then), on_time, late
    # (not yet), ready_late, never (superseded first); ``ready_at``: when they served.
    ready_state: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lead_s: Mapped[float | None] = mapped_column(Float, nullable=True)


class ColdStartRow(Base):
    """A measured cold start of an endpoint (``rota.domain.coldstart``), the last few kept."""

    __tablename__ = "cold_starts"
    __table_args__ = (
        Index("ix_cold_starts_endpoint", "endpoint_id", "id"),
        Index("ix_cold_starts_kind", "project_id", "template", "gpu_type"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(Integer)
    endpoint_id: Mapped[int] = mapped_column(Integer)
    template: Mapped[str | None] = mapped_column(String(63), nullable=True)
    gpu_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    began_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ready_at: Mapped[datetime] = mapped_column(UTCDateTime)
    phases: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    kind: Mapped[str] = mapped_column(String(8), default="deploy")  # wake (from SLEEPING) or deploy


class EventRow(Base):
    """An event of a task or an endpoint. Kept after its subject is deleted (no foreign
    key on purpose)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_task_id_id", "task_id", "id"), Index("ix_events_endpoint_id_id", "endpoint_id", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(Integer, index=True)
    task_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    task_name: Mapped[str | None] = mapped_column(String(63), nullable=True)
    endpoint_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    endpoint_name: Mapped[str | None] = mapped_column(String(63), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RequestLogRow(Base):
    """A call through the base URL, as the gateway recorded it (``rota.domain.requests``).
    ``seq`` is the order of arrival here; ``record_id`` makes a batch sent twice count once."""

    __tablename__ = "request_logs"
    __table_args__ = (
        Index("ix_request_logs_endpoint_time", "endpoint_id", "started_at", "seq"),
        Index("ix_request_logs_project_time", "project_id", "started_at", "seq"),
        Index("ix_request_logs_project_seq", "project_id", "seq"),
        Index("ix_request_logs_started_at", "started_at"),
        {"sqlite_autoincrement": True},  # a seq is never given twice, even after a prune empties the table
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(String(32), unique=True)
    request_id: Mapped[str] = mapped_column(String(128), index=True)
    started_at: Mapped[float] = mapped_column(Float)  # Unix time: ordered, compared, paged on
    project_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    key_prefix: Mapped[str | None] = mapped_column(String(16), nullable=True)
    endpoint_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    route: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    duration_ms: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    queue_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    wake_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    input_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    finish_reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    replica_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    request_content: Mapped[str | None] = mapped_column(Text, nullable=True)
    response_content: Mapped[str | None] = mapped_column(Text, nullable=True)


class UsageRow(Base):
    """Replica-seconds of an endpoint in one hour (UTC), as the reconciler saw replicas run;
    ``unit`` is what a replica's price is counted in (a GPU type, or ``cpu``)."""

    __tablename__ = "usage_hours"
    __table_args__ = (UniqueConstraint("endpoint_id", "hour"), Index("ix_usage_hours_project_hour", "project_id", "hour"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[int] = mapped_column(Integer)
    project_id: Mapped[int] = mapped_column(Integer)
    hour: Mapped[float] = mapped_column(Float)  # Unix time of the hour's start
    unit: Mapped[str] = mapped_column(String(32))
    units_per_replica: Mapped[float] = mapped_column(Float)
    replica_seconds: Mapped[float] = mapped_column(Float, default=0.0)


class ReplicaSampleRow(Base):
    """An endpoint's replicas as Ray Serve reported them, every ten seconds, kept a day
    (its monitoring series)."""

    __tablename__ = "replica_samples"
    __table_args__ = (Index("ix_replica_samples_endpoint_at", "endpoint_id", "at"), Index("ix_replica_samples_at", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[int] = mapped_column(Integer)
    at: Mapped[float] = mapped_column(Float)  # Unix time
    running: Mapped[int] = mapped_column(Integer)
    target: Mapped[int | None] = mapped_column(Integer, nullable=True)
    min: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ReplicaStatsRow(Base):
    """What an endpoint replica reported of itself (``serve_apps/_replica_stats.py``):
    its engine's gauges and its hardware, every ten seconds, kept a day."""

    __tablename__ = "replica_stats"
    __table_args__ = (Index("ix_replica_stats_endpoint_at", "endpoint_id", "at"), Index("ix_replica_stats_at", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[int] = mapped_column(Integer)
    replica: Mapped[str] = mapped_column(String(128))
    at: Mapped[float] = mapped_column(Float)  # Unix time, as the control plane received it
    cpu_percent: Mapped[float | None] = mapped_column(Float, nullable=True)  # of one core, summed over its processes
    memory_bytes: Mapped[float | None] = mapped_column(Float, nullable=True)
    gpu_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    gpu_memory_bytes: Mapped[float | None] = mapped_column(Float, nullable=True)
    kv_cache_usage: Mapped[float | None] = mapped_column(Float, nullable=True)  # 0..1
    engine_running: Mapped[float | None] = mapped_column(Float, nullable=True)
    engine_waiting: Mapped[float | None] = mapped_column(Float, nullable=True)


__all__ = ["DEFAULT_PROJECT_ID", "Base", "UTCDateTime", "utcnow"]  # re-exported: every service imports them from here
