"""Who runs the loops: the lease several control planes share, and the nudges a standby
leaves for the leader (``rota.services.leadership``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from rota.store.base import Base, UTCDateTime, utcnow


class LeaseRow(Base):
    """One row per lease. ``epoch`` grows with each new holder (the fencing token);
    ``renewals`` with each renewal, which is what a standby watches; ``holder`` None: let go."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(255), nullable=True)
    epoch: Mapped[int] = mapped_column(Integer)
    renewals: Mapped[int] = mapped_column(Integer, default=0)
    since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)  # shown only: no process compares wall clocks
    renewed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NudgeRow(Base):
    """A change made through a standby's API: the leader looks at the task again (or, with
    none, only reconciles) and deletes the nudge."""

    __tablename__ = "nudges"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
