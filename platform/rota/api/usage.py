"""``/api/v1/usage``, ``/api/v1/endpoints/{ref}/metrics``, ``/api/v1/tasks/{ref}/projection`` and
``/api/v1/endpoints/{ref}/suggested-schedule``: what endpoints used and cost, how they served
over time, what a task's schedule commits to, and a schedule their traffic suggests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Literal

from fastapi import APIRouter, Query, Request

from rota.api.deps import Tasks, Who, runtime
from rota.domain.schedule import to_local
from rota.services.coldstarts import spec_for
from rota.services.monitoring import Series
from rota.services.suggestions import SuggestedSchedule
from rota.services.usage import Projection, UsageLine

router = APIRouter(prefix="/api/v1", tags=["usage"])


def _utc(value: datetime | None, default: datetime) -> datetime:
    if value is None:
        return default
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


@router.get("/usage", response_model=list[UsageLine], summary="GPU-hours, tokens, requests and cost of the project")
def usage(
    request: Request,
    who: Who,
    since: datetime | None = Query(None, description="default: 7 days ago (ISO 8601; UTC unless it says)"),
    until: datetime | None = Query(None, description="default: now"),
    group_by: Literal["endpoint", "project", "day"] = Query(
        "endpoint", description="one line per endpoint, the project, or UTC day"
    ),
) -> list[UsageLine]:
    now = datetime.now(timezone.utc)
    rt = runtime(request)
    return rt.usage.report(who, _utc(since, now - timedelta(days=7)), _utc(until, now), group_by)  # type: ignore[no-any-return]


@router.get(
    "/endpoints/{ref}/metrics",
    response_model=Series,
    summary="An endpoint's monitoring series: calls, latency, tokens, replicas, and its events",
)
def endpoint_metrics(
    ref: str,
    request: Request,
    who: Who,
    since: datetime | None = Query(None, description="default: an hour ago (ISO 8601; UTC unless it says)"),
    until: datetime | None = Query(None, description="default: now"),
    step: float | None = Query(None, ge=1, le=86_400, description="seconds per point; default: about 240 points"),
) -> Series:
    now = datetime.now(timezone.utc)
    rt = runtime(request)
    return rt.monitoring.series(who, ref, _utc(since, now - timedelta(hours=1)), _utc(until, now), step)  # type: ignore[no-any-return]


@router.get("/tasks/{ref}/projection", response_model=Projection, summary="What a task's schedule commits to and allows, per day")
def projection(
    ref: str, request: Request, who: Who, tasks: Tasks, days: int = Query(30, ge=1, le=366, description="local days from today")
) -> Projection:
    rt = runtime(request)
    with rt.db.session() as s:
        task = tasks.find(s, who, ref)
        spec = spec_for(s, task, tasks.ready)[0]  # a ready_by task's early starts count
        s.expunge(task)
    today = to_local(spec.tz, datetime.now(timezone.utc)).date()
    return rt.usage.projection(who, task, today, days, spec)  # type: ignore[no-any-return]


@router.get(
    "/endpoints/{ref}/suggested-schedule",
    response_model=SuggestedSchedule,
    summary="A daily schedule from the endpoint's traffic, with its cost and cold-start waits next to the current one",
)
def suggested_schedule(
    ref: str,
    request: Request,
    who: Who,
    days: int = Query(14, ge=1, le=90, description="the last full local days to analyse"),
    timezone_: str | None = Query(
        None, alias="timezone", max_length=64, description="IANA zone of the pattern (default: its task's, else UTC)"
    ),
    period_minutes: int = Query(60, description="length of a period of the day: 15, 30, 60, 120, 180 or 240"),
    headroom: float = Query(0.2, ge=0, le=10, description="extra capacity over the traffic (0.2: 20 %)"),
    ready_by: bool = Query(True, description="scale-ups start early by the measured cold start"),
) -> SuggestedSchedule:
    rt = runtime(request)
    return rt.suggestions.suggest(who, ref, days, timezone_, period_minutes, headroom, ready_by)  # type: ignore[no-any-return]
