"""A suggested daily schedule for an endpoint, from its request log (``rota.domain.suggest``),
with what it and the current schedule would have cost over the analysed days and how
many of their calls would have waited for a cold start."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rota.domain.coldstart import ColdStartStats
from rota.domain.endpoints import Scaling
from rota.domain.errors import InvalidInput
from rota.domain.schedule import ScheduleSpec, get_timezone, to_local, to_utc
from rota.domain.specs import target_ongoing
from rota.domain.suggest import Call, cold_waits, entries, min_replicas_at, pattern
from rota.services import views
from rota.services.auth import Principal
from rota.services.coldstarts import ReadyBy, cold_start, spec_for
from rota.services.endpoints import EndpointService
from rota.services.usage import Projection, UsageService, unit_of
from rota.store.db import Database
from rota.store.tables import RequestLogRow, TaskRow, utcnow

PERIODS = (15, 30, 60, 120, 180, 240)  # minutes: each divides the day
MAX_CALLS = 500_000  # analysed at once (in memory): more asks for fewer days
DEFAULT_COOLDOWN_S = 600.0  # Ray Serve's downscale delay when an endpoint sets none


class Outcome(BaseModel):
    """A schedule replayed over the analysed days."""

    schedule: str = Field(description="what it is: suggested, task NAME, or the endpoint's own scaling")
    projection: Projection = Field(description="replica-hours, unit-hours and cost: floor (min bounds) and ceiling (max)")
    cold_start_waits: int = Field(description="calls of the analysed days that would have waited for a cold start")


class SuggestedSchedule(BaseModel):
    endpoint: str
    timezone: str
    days: list[date] = Field(description="the local days analysed (the last full ones)")
    period_minutes: int
    headroom: float
    target_ongoing_requests: float
    requests: int = Field(description="calls analysed")
    cold_start: ColdStartStats = Field(description="the cold start the replay and ready_by use")
    schedule: list[dict[str, Any]] = Field(description="daily entries: time, min_replicas, max_replicas, ready_by")
    suggested: Outcome
    current: Outcome
    manifest: dict[str, Any] = Field(description="a task for rota apply (created idle)")


@dataclass
class SuggestionService:
    db: Database
    endpoints: EndpointService
    usage: UsageService
    ready: ReadyBy
    clock: Callable[[], datetime] = utcnow

    def suggest(
        self, who: Principal, ref: str, days: int, zone: str | None, period_min: int, headroom: float, ready_by: bool
    ) -> SuggestedSchedule:
        if period_min not in PERIODS:
            raise InvalidInput(f"period_minutes must be one of {', '.join(map(str, PERIODS))}", field="period_minutes")
        with self.db.session() as s:
            ep = self.endpoints.find(s, who, ref)
            task = s.scalars(
                select(TaskRow).where(TaskRow.endpoint_id == ep.id, TaskRow.status == "active").order_by(TaskRow.id).limit(1)
            ).first()
            zone = zone or (task.timezone if task else "UTC")
            try:
                tz = get_timezone(zone)
            except ValueError as e:
                raise InvalidInput(str(e), field="timezone") from None
            today = to_local(tz, self.clock()).date()
            analysed = [today - timedelta(days=days - i) for i in range(days)]
            lo = to_utc(tz, datetime.combine(analysed[0], time())).timestamp()
            hi = to_utc(tz, datetime.combine(today, time())).timestamp()
            calls = _calls(s, ep.id, lo, hi)
            scaling = Scaling.model_validate(ep.scaling) if ep.scaling else None
            target = target_ongoing(scaling.target_ongoing_requests if scaling else None, ep.per_replica)
            figures = cold_start(s, ep, self.ready)
            cold_s = figures.p50_s if figures.p50_s is not None else figures.lead_s - self.ready.margin_s
            cooldown = scaling.cooldown_period_s if scaling and scaling.cooldown_period_s is not None else DEFAULT_COOLDOWN_S
            cap = self.endpoints.settings.max_replicas  # what a schedule entry may ask for
            periods = pattern(calls, zone, analysed, period_min, target, headroom, cap)
            schedule = entries(periods, ready_by)
            new = ScheduleSpec.build("daily", zone, schedule, False, timedelta(seconds=figures.lead_s))
            own = views.bounds(ep)
            if task is not None:
                now_spec, now_name = spec_for(s, task, self.ready)[0], f"task {task.name}"
            else:
                lo_hi = [{"time": "00:00", "min_replicas": own.min if own else 0, "max_replicas": own.max if own else 1}]
                now_spec, now_name = ScheduleSpec.build("daily", zone, lo_hi), "the endpoint's own scaling"
            priced_in, per = unit_of(ep)
            name = ep.name

        def outcome(spec: ScheduleSpec, what: str) -> Outcome:
            projection = self.usage.plan(who, spec, (0, 0), priced_in, per, analysed[0], days, what)
            waits = cold_waits(calls, min_replicas_at(spec, 0, lo, hi), cold_s, cooldown)
            return Outcome(schedule=what, projection=projection, cold_start_waits=waits)

        task_doc = {"name": f"{name}-suggested"[:63].rstrip("-"), "endpoint": name, "type": "daily", "timezone": zone}
        manifest = {"tasks": [{**task_doc, "schedule": schedule, "active": False}]}
        return SuggestedSchedule(
            endpoint=name,
            timezone=zone,
            days=analysed,
            period_minutes=period_min,
            headroom=headroom,
            target_ongoing_requests=target,
            requests=len(calls),
            cold_start=figures,
            schedule=schedule,
            suggested=outcome(new, "suggested"),
            current=outcome(now_spec, now_name),
            manifest=manifest,
        )


def _calls(s: Session, endpoint_id: int, lo: float, hi: float) -> list[Call]:
    where = (RequestLogRow.endpoint_id == endpoint_id) & (RequestLogRow.started_at >= lo) & (RequestLogRow.started_at < hi)
    n = s.scalar(select(func.count()).select_from(RequestLogRow).where(where)) or 0
    if n > MAX_CALLS:
        raise InvalidInput(f"{n} calls in these days, more than {MAX_CALLS} analysed at once: ask for fewer days", field="days")
    rows = s.execute(select(RequestLogRow.started_at, RequestLogRow.duration_ms).where(where))
    return [Call(start, start + (ms or 0.0) / 1000) for start, ms in rows]
