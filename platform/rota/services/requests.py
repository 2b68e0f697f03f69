"""Request logs: stored as the gateway sends them, read by project, pruned by age."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import ColumnElement, Result, Table, delete, func, or_, select, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from rota.domain.errors import NotFound
from rota.domain.requests import (
    RECORDS,
    GatewayBatch,
    GatewayRecord,
    RequestPage,
    RequestPublic,
    decode_cursor,
    encode_cursor,
    like_pattern,
    operation,
    status_range,
)
from rota.services.auth import Principal
from rota.store.db import Database
from rota.store.names import endpoint_names
from rota.store.tables import EndpointRow, ProjectRow, RequestLogRow
from rota.telemetry import Telemetry

DAY_S = 86_400.0
PRUNE_SLICE = 5_000
log = logging.getLogger(__name__)


def _valid(records: list[dict[str, Any]]) -> list[GatewayRecord]:
    """The records that are valid: the whole batch in one pass, one by one only when it is not."""
    try:
        return RECORDS.validate_python(records)
    except ValidationError:
        pass
    valid = []
    for raw in records:
        try:
            valid.append(GatewayRecord.model_validate(raw))
        except ValidationError as e:
            log.warning("request record left out: %s", str(e).splitlines()[0][:200])
    return valid


def _count(result: Result[Any]) -> int:
    """Rows an INSERT or DELETE touched."""
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class RequestFilter:
    since: datetime | None = None
    until: datetime | None = None
    status: str | None = None
    key_prefix: str | None = None
    search: str | None = None


@dataclass
class RequestLogService:
    db: Database
    retention_days: int = 30
    clock: Callable[[], float] = time.time
    stored: int = 0  # records stored since start
    duplicates: int = 0  # records sent again (a retried batch) and stored once
    gateway_dropped: dict[str, int] = field(default_factory=dict)  # per gateway: records it dropped (buffer full)
    rejected: int = 0  # records left out: not valid
    kept_out: int = 0  # records left out: their project turned its request log off
    telemetry: Telemetry | None = None

    def ingest(self, batch: GatewayBatch, gateway: str = "gateway") -> dict[str, int]:
        """Store a batch: each record once (one sent again is skipped), a record that is not
        valid left out and counted, and none of a project that keeps its calls out (a
        gateway follows the switch within a second; what it sent meanwhile stops here).
        Metrics count exactly the records stored."""
        self.gateway_dropped[gateway] = batch.dropped
        valid = _valid(batch.records)
        rejected = len(batch.records) - len(valid)
        self.rejected += rejected
        if not valid:
            return {"stored": 0, "rejected": rejected}
        with self.db.session() as s:
            off = set(s.scalars(select(ProjectRow.id).where(ProjectRow.request_log.is_(False))))
            if off:
                kept = [r for r in valid if r.project_id not in off]
                self.kept_out += len(valid) - len(kept)
                if self.telemetry is not None:
                    self.telemetry.kept_out.inc(len(valid) - len(kept))
                if not (valid := kept):
                    return {"stored": 0, "rejected": rejected}
            rows = RECORDS.dump_python(valid)
            insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
            table = cast(Table, RequestLogRow.__table__)
            # One statement for every batch (compiled once); RETURNING says which rows are new.
            stmt = insert(table).on_conflict_do_nothing(index_elements=["record_id"]).returning(table.c.record_id)
            new = set(s.connection().execute(stmt, rows).scalars().all())
            stored = [r for r in valid if r.record_id in new]
            names = self._names(s, stored) if self.telemetry is not None else {}
        if self.telemetry is not None:  # after the commit: a batch that failed to commit is counted when it is stored
            self.telemetry.requests_logged(stored, names, len(valid) - len(stored))
        self.stored += len(stored)
        self.duplicates += len(valid) - len(stored)
        return {"stored": len(stored), "rejected": rejected}

    @staticmethod
    def _names(s: Session, records: list[GatewayRecord]) -> dict[int | None, tuple[str, str]]:
        """Endpoint id -> (project name, endpoint name), and -project id -> (project name, ""),
        for the metrics' labels."""
        ids = {r.endpoint_id for r in records if r.endpoint_id is not None}
        projects = {r.project_id for r in records if r.project_id is not None}
        out: dict[int | None, tuple[str, str]] = {}
        out.update(endpoint_names(s, ids).items())
        if projects:
            out |= {-i: (n, "") for i, n in s.execute(select(ProjectRow.id, ProjectRow.name).where(ProjectRow.id.in_(projects)))}
        return out

    def page(
        self,
        who: Principal,
        f: RequestFilter,
        endpoint_id: int | None = None,
        cursor: str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> RequestPage:
        """Newest first, ``limit`` at a time (``cursor``: the next, older page); with
        ``after``, the records stored since that one, oldest first (to follow)."""
        cond = self._visible(who) & self._matching(f)
        if endpoint_id is not None:
            cond = cond & (RequestLogRow.endpoint_id == endpoint_id)
        with self.db.session() as s:
            # The newest record the caller may see: where a follower goes on from (never
            # another project's count), even when none of the records since match its filter.
            last_seq = s.scalar(select(func.max(RequestLogRow.seq)).where(self._visible(who))) or 0
            stmt = select(RequestLogRow).where(cond)
            if after is not None:
                upto = RequestLogRow.seq.between(after + 1, max(after, last_seq))
                rows = list(s.scalars(stmt.where(upto).order_by(RequestLogRow.seq).limit(limit)))
                reached = rows[-1].seq if len(rows) == limit else max(after, last_seq)
                return RequestPage(data=self._public(s, rows), last_seq=reached)
            if cursor:
                at, seq = decode_cursor(cursor)
                stmt = stmt.where(
                    (RequestLogRow.started_at < at) | ((RequestLogRow.started_at == at) & (RequestLogRow.seq < seq))
                )
            order = (RequestLogRow.started_at.desc(), RequestLogRow.seq.desc())
            rows = list(s.scalars(stmt.order_by(*order).limit(limit + 1)))
            more = len(rows) > limit
            rows = rows[:limit]
            nxt = encode_cursor(rows[-1].started_at, rows[-1].seq) if more else None
            return RequestPage(data=self._public(s, rows), next_cursor=nxt, last_seq=last_seq)

    def get(self, who: Principal, request_id: str) -> RequestPublic:
        """The latest record with this id that the caller may see."""
        with self.db.session() as s:
            # Through its id's own index, only among the caller's: callers choose their ids, so
            # another project's calls with the same one must not push this project's out.
            # (``+ 0``: not the project's index, which would walk the project newest first.)
            mine = (RequestLogRow.project_id + 0) == who.project_id
            where = (RequestLogRow.request_id == request_id) & (
                or_(mine, RequestLogRow.project_id.is_(None)) if who.admin else mine
            )
            row = s.scalars(select(RequestLogRow).where(where).order_by(RequestLogRow.started_at.desc()).limit(1)).first()
            if row is None:
                raise NotFound(f"no request {request_id!r} in this project's request log", field="request_id")
            return self._public(s, [row])[0]

    def prune(self) -> int:
        """Delete records older than their project's retention (the default for calls no
        project was found for)."""
        now = self.clock()
        deleted = 0
        with self.db.session() as s:
            custom = {p: d for p, d in s.execute(select(ProjectRow.id, ProjectRow.request_log_retention_days)).all() if d}
        rest = RequestLogRow.project_id.is_(None) | RequestLogRow.project_id.notin_(list(custom) or [-1])
        conditions = [
            *((RequestLogRow.project_id == p) & (RequestLogRow.started_at < now - d * DAY_S) for p, d in custom.items()),
            rest & (RequestLogRow.started_at < now - self.retention_days * DAY_S),
        ]
        for old in conditions:
            while True:  # in slices, each its own short transaction: fires never wait long on the store
                with self.db.session() as s:
                    batch = select(RequestLogRow.seq).where(old).limit(PRUNE_SLICE).scalar_subquery()
                    n = _count(s.execute(delete(RequestLogRow).where(RequestLogRow.seq.in_(batch))))
                deleted += n
                if n < PRUNE_SLICE:
                    break
        return deleted

    @staticmethod
    def _visible(who: Principal) -> ColumnElement[bool]:
        """A key sees its project's records; an admin also sees calls no project was found
        for (a wrong or revoked key)."""
        mine = RequestLogRow.project_id == who.project_id
        return or_(mine, RequestLogRow.project_id.is_(None)) if who.admin else mine

    @staticmethod
    def _matching(f: RequestFilter) -> ColumnElement[bool]:
        cond: ColumnElement[bool] = true()  # (a condition on seq here would lead SQLite to the wrong index)
        if f.since is not None:
            cond = cond & (RequestLogRow.started_at >= f.since.timestamp())
        if f.until is not None:
            cond = cond & (RequestLogRow.started_at < f.until.timestamp())
        bounds = status_range(f.status)
        if bounds:
            cond = cond & RequestLogRow.status.between(*bounds)
        if f.key_prefix:
            cond = cond & (RequestLogRow.key_prefix == f.key_prefix)
        if f.search:
            pattern = like_pattern(f.search)
            columns = (
                RequestLogRow.request_id,
                RequestLogRow.model,
                RequestLogRow.error_code,
                RequestLogRow.replica_id,
                RequestLogRow.request_content,
                RequestLogRow.response_content,
            )
            cond = cond & or_(*(c.like(pattern, escape="\\") for c in columns))
        return cond

    @staticmethod
    def _public(s: Session, rows: list[RequestLogRow]) -> list[RequestPublic]:
        endpoints = {r.endpoint_id for r in rows if r.endpoint_id is not None}
        projects = {r.project_id for r in rows if r.project_id is not None}
        names = (
            dict(s.execute(select(EndpointRow.id, EndpointRow.name).where(EndpointRow.id.in_(endpoints))).all())
            if endpoints
            else {}
        )
        pnames = (
            dict(s.execute(select(ProjectRow.id, ProjectRow.name).where(ProjectRow.id.in_(projects))).all()) if projects else {}
        )
        return [
            RequestPublic(
                request_id=r.request_id,
                time=datetime.fromtimestamp(r.started_at, timezone.utc),
                endpoint=names.get(r.endpoint_id) if r.endpoint_id is not None else None,
                endpoint_id=r.endpoint_id,
                project=pnames.get(r.project_id) if r.project_id is not None else None,
                key_prefix=r.key_prefix,
                model=r.model,
                operation=operation(r.route),
                route=r.route,
                status=r.status,
                error_code=r.error_code,
                stream=r.stream,
                duration_ms=r.duration_ms,
                ttft_ms=r.ttft_ms,
                queue_ms=r.queue_ms,
                wake_ms=r.wake_ms,
                woke=r.wake_ms is not None,
                input_tokens=r.input_tokens,
                output_tokens=r.output_tokens,
                finish_reasons=list(r.finish_reasons or []),
                replica_id=r.replica_id,
                request_content=r.request_content,
                response_content=r.response_content,
            )
            for r in rows
        ]
