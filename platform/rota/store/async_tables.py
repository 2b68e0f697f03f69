"""The rows of async invocations, files and batches (``rota.services.invocations``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from rota.store.base import Base


class AsyncRequestRow(Base):
    """An async request (``rota.domain.invocations``), alone or a line of a batch: its body,
    its state, and the answer once there is one (recorded once: the update that records it
    requires the attempt that sent it)."""

    __tablename__ = "async_requests"
    __table_args__ = (
        Index("ix_async_requests_queue", "status", "endpoint_id", "not_before"),
        Index("ix_async_requests_project", "project_id", "created_at"),
        Index("ix_async_requests_batch", "batch_id", "line"),
        Index("ix_async_requests_webhook", "webhook_status", "webhook_next"),
        Index("ix_async_requests_expires", "expires_at"),
        Index("ix_async_requests_finished", "finished_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[int] = mapped_column(Integer)
    endpoint_id: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200))
    route: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[float] = mapped_column(Float, default=0.0)  # Unix time: not sent before (backoff)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)  # running: requeued after this
    claim: Mapped[str | None] = mapped_column(String(32), nullable=True)  # running: the send that holds it
    run_in_window: Mapped[bool] = mapped_column(Boolean, default=False)
    batch_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    custom_id: Mapped[str | None] = mapped_column(String(512), nullable=True)
    line: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    webhook_status: Mapped[str | None] = mapped_column(String(16), nullable=True)  # pending, delivered, failed
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_next: Mapped[float | None] = mapped_column(Float, nullable=True)
    webhook_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    expires_at: Mapped[float] = mapped_column(Float)


class FileRow(Base):
    """A file of the OpenAI Files API: a batch's input, output or errors."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_project", "project_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[int] = mapped_column(Integer)
    purpose: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column("bytes", Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class BatchRow(Base):
    """A batch of the OpenAI Batch API; its lines are ``AsyncRequestRow``s."""

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_project", "project_id", "created_at"), Index("ix_batches_status", "status"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[int] = mapped_column(Integer)
    endpoint_id: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200))
    route: Mapped[str] = mapped_column(String(64))
    input_file_id: Mapped[str] = mapped_column(String(40))
    output_file_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error_file_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    completion_window: Mapped[str] = mapped_column(String(8))
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    run_in_window: Mapped[bool] = mapped_column(Boolean, default=False)
    total: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    loaded_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # every line queued (None: still validating)
    loading_until: Mapped[float | None] = mapped_column(Float, nullable=True)  # the loader's lease
    load_tries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    load_error: Mapped[str | None] = mapped_column(Text, nullable=True)  # why the last load stopped, or failed
    failed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    in_progress_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finalizing_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    completed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    expired_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    cancelling_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    cancelled_at: Mapped[float | None] = mapped_column(Float, nullable=True)
