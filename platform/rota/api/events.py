"""Deployment events: a task's, an endpoint's, and the project's (deleted ones' included)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from rota.api.deps import Endpoints, Events, Tasks, Who
from rota.domain.events import EventPublic
from rota.domain.names import MAX_ID

router = APIRouter(prefix="/api/v1", tags=["events"])
AfterId = Query(0, ge=0, le=MAX_ID, description="only events after this id (to follow a log)")
Limit = Query(1000, ge=1, le=10_000)


@router.get("/events", response_model=list[EventPublic], summary="The project's events, in order")
def all_events(
    who: Who,
    events: Events,
    task_name: str | None = Query(None, max_length=63),
    endpoint_name: str | None = Query(None, max_length=63),
    after_id: int = AfterId,
    limit: int = Limit,
) -> list[EventPublic]:
    return events.list(who, after_id, limit, task_name=task_name, endpoint_name=endpoint_name)


@router.get("/tasks/{ref}/events", response_model=list[EventPublic], summary="A task's events, in order")
def task_events(
    ref: str, who: Who, events: Events, tasks: Tasks, after_id: int = AfterId, limit: int = Limit
) -> list[EventPublic]:
    return events.list(who, after_id, limit, task_id=tasks.get(who, ref).id)


@router.get("/endpoints/{ref}/events", response_model=list[EventPublic], summary="An endpoint's events, in order")
def endpoint_events(
    ref: str, who: Who, events: Events, endpoints: Endpoints, after_id: int = AfterId, limit: int = Limit
) -> list[EventPublic]:
    return events.list(who, after_id, limit, endpoint_id=endpoints.get(who, ref).id)
