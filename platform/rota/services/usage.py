"""Usage and cost: replica-seconds metered as the reconciler sees replicas run, the price
book, usage reports, and what a task's schedule commits to."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from sqlalchemy import Integer, cast, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from rota.domain.errors import InvalidInput
from rota.domain.schedule import ScheduleSpec
from rota.domain.usage import HOUR_S, commitments, hours_split
from rota.services import views
from rota.services.auth import Principal
from rota.services.views import spec_of
from rota.store.db import Database
from rota.store.tables import EndpointRow, ProjectRow, RequestLogRow, TaskRow, UsageRow

DEFAULT_PRICES = Path(__file__).resolve().parent.parent / "catalog" / "prices.yaml"
DAY_S = 86_400.0
MAX_GAP_S = 120.0  # a longer pause between observations (the control plane was down) is not counted
GroupBy = Literal["endpoint", "project", "day"]


def load_prices(path: Path | None) -> dict[str, float]:
    raw = yaml.safe_load((path or DEFAULT_PRICES).read_text()) or {}
    return {str(k): float(v) for k, v in (raw.get("prices") or {}).items()}


def unit_of(ep: EndpointRow) -> tuple[str, float]:
    return unit(ep.gpu_type, ep.gpu_count, ep.resources or {})


def unit(gpu_type: str | None, gpu_count: int | None, resources: dict[str, Any]) -> tuple[str, float]:
    """What one replica is priced in: its GPUs of their type, or its vCPUs."""
    if gpu_count and gpu_type and gpu_type != "cpu":
        return gpu_type, float(gpu_count)
    if resources.get("num_gpus"):
        return str(resources.get("accelerator_type") or "gpu"), float(resources["num_gpus"])
    return "cpu", float(resources.get("num_cpus") or 1.0)


@dataclass
class UsageMeter:
    """Adds each endpoint's running replicas x the time since the last observation."""

    db: Database
    clock: Callable[[], float] = time.time
    _last: tuple[float, dict[int, int]] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, running: Mapping[int, int]) -> None:
        with self._lock:
            now = self.clock()
            last, self._last = self._last, (now, dict(running))
        if last is None or not 0 < now - last[0] <= MAX_GAP_S:
            return
        counted = {ep: n for ep, n in last[1].items() if n > 0}
        if not counted:
            return
        with self.db.session() as s:
            rows = s.scalars(select(EndpointRow).where(EndpointRow.id.in_(list(counted)))).all()
            insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
            for ep in rows:
                unit, per = unit_of(ep)
                for hour, seconds in hours_split(last[0], now):
                    values = {"endpoint_id": ep.id, "project_id": ep.project_id, "hour": hour, "unit": unit}
                    values |= {"units_per_replica": per, "replica_seconds": counted[ep.id] * seconds}
                    stmt = insert(UsageRow).values(**values)
                    s.execute(
                        stmt.on_conflict_do_update(
                            index_elements=["endpoint_id", "hour"],
                            set_={"replica_seconds": UsageRow.replica_seconds + stmt.excluded.replica_seconds},
                        )
                    )


class UsageLine(BaseModel):
    key: str
    unit_hours: float  # GPU-hours (or vCPU-hours for CPU replicas)
    replica_hours: float
    requests: int
    input_tokens: int
    output_tokens: int
    cost: float


class Bound(BaseModel):
    replica_hours: float
    unit_hours: float
    cost: float


class ProjectionDay(BaseModel):
    date: date
    hours: float
    floor: Bound
    ceiling: Bound


class Projection(BaseModel):
    task: str
    active: bool  # an idle task fires nothing: this is what it would commit to once activated
    timezone: str
    unit: str
    units_per_replica: float
    price_per_unit_hour: float
    days: list[ProjectionDay]
    floor: Bound
    ceiling: Bound


@dataclass
class UsageService:
    db: Database
    prices: dict[str, float]

    def price_book(self, project_id: int) -> dict[str, float]:
        with self.db.session() as s:
            own = s.scalar(select(ProjectRow.prices).where(ProjectRow.id == project_id)) or {}
        return {**self.prices, **{k: float(v) for k, v in own.items()}}

    def report(self, who: Principal, since: datetime, until: datetime, group_by: GroupBy) -> list[UsageLine]:
        if until <= since:
            raise InvalidInput("until must be after since", field="until")
        lo, hi = since.timestamp(), until.timestamp()
        lo_hour = lo - lo % HOUR_S
        prices = self.price_book(who.project_id)
        with self.db.session() as s:
            names = dict(
                s.execute(select(EndpointRow.id, EndpointRow.name).where(EndpointRow.project_id == who.project_id)).all()
            )
            usage = s.execute(
                select(
                    UsageRow.endpoint_id, UsageRow.hour, UsageRow.unit, UsageRow.units_per_replica, UsageRow.replica_seconds
                ).where(UsageRow.project_id == who.project_id, UsageRow.hour >= lo_hour, UsageRow.hour < hi)
            ).all()
            # Counted by the store, per endpoint and UTC day: never every record of the window in memory.
            day = cast(RequestLogRow.started_at / DAY_S, Integer)
            calls = s.execute(
                select(
                    RequestLogRow.endpoint_id,
                    day,
                    func.count(),
                    func.coalesce(func.sum(RequestLogRow.input_tokens), 0),
                    func.coalesce(func.sum(RequestLogRow.output_tokens), 0),
                )
                .where(RequestLogRow.project_id == who.project_id, RequestLogRow.started_at >= lo, RequestLogRow.started_at < hi)
                .group_by(RequestLogRow.endpoint_id, day)
            ).all()
            project = s.scalar(select(ProjectRow.name).where(ProjectRow.id == who.project_id)) or ""

        def key(endpoint_id: int | None, at: float) -> str:
            if group_by == "endpoint":
                return names.get(endpoint_id, f"endpoint {endpoint_id}") if endpoint_id is not None else "-"
            if group_by == "day":
                return datetime.fromtimestamp(at, timezone.utc).date().isoformat()
            return project

        lines: dict[str, dict[str, float]] = {}
        for endpoint_id, hour, unit, per, seconds in usage:
            replica_hours = seconds / HOUR_S  # usage is kept by the hour: every hour the window touches counts whole
            line = lines.setdefault(key(endpoint_id, hour), _empty())
            line["replica_hours"] += replica_hours
            line["unit_hours"] += replica_hours * per
            line["cost"] += replica_hours * per * prices.get(unit, 0.0)
        for called, on_day, n, tokens_in, tokens_out in calls:
            line = lines.setdefault(key(called, on_day * DAY_S), _empty())
            line["requests"] += n
            line["input_tokens"] += int(tokens_in or 0)
            line["output_tokens"] += int(tokens_out or 0)
        return [
            UsageLine(
                key=k,
                unit_hours=round(v["unit_hours"], 6),
                replica_hours=round(v["replica_hours"], 6),
                requests=int(v["requests"]),
                input_tokens=int(v["input_tokens"]),
                output_tokens=int(v["output_tokens"]),
                cost=round(v["cost"], 6),
            )
            for k, v in sorted(lines.items())
        ]

    def projection(self, who: Principal, task: TaskRow, today: date, days: int, spec: ScheduleSpec | None = None) -> Projection:
        """``spec``: the task's schedule with its ready_by lead (default: without)."""
        with self.db.session() as s:
            ep = s.get(EndpointRow, task.endpoint_id)
            if ep is None:
                raise InvalidInput("the task's endpoint is gone", field="task")
            priced_in, per = unit_of(ep)
            now = views.bounds(ep)  # the bounds in force until the schedule's next fire
            before = (now.min, now.max) if now else (0, 0)
        return self.plan(who, spec or spec_of(task), before, priced_in, per, today, days, task.name, task.status == "active")

    def preview(
        self,
        who: Principal,
        spec: ScheduleSpec,
        gpu_type: str | None,
        gpu_count: int | None,
        resources: dict[str, Any],
        today: date,
        days: int,
    ) -> Projection:
        """The projection of a schedule not stored yet (the console's launch summary), for
        a new endpoint that sleeps until the schedule's first fire."""
        name, per = unit(gpu_type, gpu_count, resources)
        return self.plan(who, spec, (0, 0), name, per, today, days, "", False)

    def plan(
        self,
        who: Principal,
        spec: ScheduleSpec,
        before: tuple[int, int],
        priced_in: str,
        per: float,
        today: date,
        days: int,
        task: str,
        active: bool = False,
    ) -> Projection:
        """What ``spec`` commits to (min bounds) and allows (max) over ``days`` local days from
        ``today``, priced in ``priced_in`` (``per`` of them per replica); ``before``: the bounds
        until its first fire."""
        price = self.price_book(who.project_id).get(priced_in, 0.0)
        out = []
        for d in commitments(spec, today, days, before):
            out.append(
                ProjectionDay(
                    date=d.day,
                    hours=d.hours,
                    floor=_bound(d.floor_replica_hours, per, price),
                    ceiling=_bound(d.ceiling_replica_hours, per, price),
                )
            )
        return Projection(
            task=task,
            active=active,
            timezone=spec.timezone,
            unit=priced_in,
            units_per_replica=per,
            price_per_unit_hour=price,
            days=out,
            floor=_bound(sum(d.floor.replica_hours for d in out), per, price),
            ceiling=_bound(sum(d.ceiling.replica_hours for d in out), per, price),
        )


def _empty() -> dict[str, float]:
    return {"unit_hours": 0.0, "replica_hours": 0.0, "requests": 0.0, "input_tokens": 0.0, "output_tokens": 0.0, "cost": 0.0}


def _bound(replica_hours: float, per: float, price: float) -> Bound:
    return Bound(
        replica_hours=round(replica_hours, 6),
        unit_hours=round(replica_hours * per, 6),
        cost=round(replica_hours * per * price, 6),
    )
