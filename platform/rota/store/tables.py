"""ORM rows. Kept apart from the API schemas (``rota.domain.models``)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite drops tzinfo)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class TaskRow(Base):
    __tablename__ = "tasks"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused after a delete

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True, index=True)
    file_path: Mapped[str] = mapped_column(String(255))
    deployment_name: Mapped[str] = mapped_column(String(255))
    ingress: Mapped[str] = mapped_column(String(255))  # ingress deployment of the application
    type: Mapped[str] = mapped_column(String(16))
    timezone: Mapped[str] = mapped_column(String(64))
    schedule: Mapped[list[Any]] = mapped_column(JSON)
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    env: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    resources: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    status: Mapped[str] = mapped_column(String(16), index=True)
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    # Fires count from here: set on activation and when an active task's schedule changes,
    # so neither applies entries that fell due before it.
    due_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    # Desired state, written by fires; None until the first fire (nothing to deploy).
    desired_min: Mapped[int | None] = mapped_column(Integer, nullable=True)
    desired_max: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The bounds last accepted by Ray Serve (for "scaled a->b" events).
    applied_min: Mapped[int | None] = mapped_column(Integer, nullable=True)
    applied_max: Mapped[int | None] = mapped_column(Integer, nullable=True)

    # Observed state, written by the reconciler.
    app_status: Mapped[str] = mapped_column(String(16), default="NOT_DEPLOYED")
    app_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    app_target_replicas: Mapped[int | None] = mapped_column(Integer, nullable=True)
    app_replica_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    app_observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


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


class EventRow(Base):
    """A deployment event. Kept after its task is deleted (no foreign key on purpose)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_task_id_id", "task_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(Integer)
    task_name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
