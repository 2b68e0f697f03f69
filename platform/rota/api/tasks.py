"""``/api/v1/tasks`` and ``/api/v1/events``: always the caller's project only."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from rota.api.deps import Who
from rota.domain.models import MAX_ID, EventPublic, TaskCreate, TaskPublic, TaskUpdate
from rota.domain.status import TaskStatus, TaskType
from rota.services.tasks import TaskService

router = APIRouter(prefix="/api/v1", tags=["tasks"])


def _svc(request: Request) -> TaskService:
    return request.app.state.runtime.tasks


def _events(rows) -> list[EventPublic]:
    return [
        EventPublic(
            id=e.id, task_id=e.task_id, task_name=e.task_name, endpoint_id=e.endpoint_id, endpoint_name=e.endpoint_name,
            kind=e.kind, message=e.message, data=e.data or {}, at=e.at,
        )  # fmt: skip
        for e in rows
    ]


@router.post("/tasks", status_code=201, response_model=TaskPublic, summary="Create a task (idle)")
def create_task(body: TaskCreate, request: Request, who: Who) -> TaskPublic:
    return _svc(request).create(body, project_id=who.project_id)


@router.get("/tasks", summary="List tasks")
def list_tasks(
    request: Request,
    who: Who,
    search: str | None = Query(None, description="substring of the name"),
    status: TaskStatus | None = None,
    type: TaskType | None = None,
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_ID),
) -> dict:
    items, total = _svc(request).list(search, status, type, limit, offset, project_id=who.project_id)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/tasks/{ref}", response_model=TaskPublic, summary="Get a task by id or name")
def get_task(ref: str, request: Request, who: Who) -> TaskPublic:
    return _svc(request).get(ref, project_id=who.project_id)


@router.patch("/tasks/{ref}", response_model=TaskPublic, summary="Partially update a task")
def update_task(ref: str, body: TaskUpdate, request: Request, who: Who) -> TaskPublic:
    return _svc(request).update(ref, body, project_id=who.project_id)


@router.delete("/tasks/{ref}", status_code=204, summary="Delete a task and tear down its application")
def delete_task(ref: str, request: Request, who: Who) -> Response:
    _svc(request).delete(ref, project_id=who.project_id)
    return Response(status_code=204)


@router.post("/tasks/{ref}/activate", response_model=TaskPublic, summary="Schedule the task's fires")
def activate_task(ref: str, request: Request, who: Who) -> TaskPublic:
    return _svc(request).activate(ref, project_id=who.project_id)


@router.post("/tasks/{ref}/deactivate", response_model=TaskPublic, summary="Stop scheduling fires")
def deactivate_task(ref: str, request: Request, who: Who) -> TaskPublic:
    return _svc(request).deactivate(ref, project_id=who.project_id)


@router.get("/tasks/{ref}/events", response_model=list[EventPublic], summary="Deployment events of a task, in order")
def task_events(
    ref: str, request: Request, who: Who, after_id: int = Query(0, ge=0, le=MAX_ID), limit: int = Query(1000, ge=1, le=10000)
) -> list[EventPublic]:
    return _events(_svc(request).events(ref, limit, after_id, project_id=who.project_id))


@router.get("/events", response_model=list[EventPublic], summary="The project's events (deleted tasks' and endpoints' included)")
def all_events(
    request: Request, who: Who, task_name: str | None = None, endpoint_name: str | None = None,
    after_id: int = Query(0, ge=0, le=MAX_ID), limit: int = Query(1000, ge=1, le=10000),
) -> list[EventPublic]:  # fmt: skip
    return _events(_svc(request).all_events(task_name, limit, after_id, project_id=who.project_id, endpoint_name=endpoint_name))
