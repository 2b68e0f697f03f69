"""``/api/v1/tasks`` and ``/api/v1/events``."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from rota.domain.models import EventPublic, TaskCreate, TaskPublic, TaskUpdate
from rota.domain.status import TaskStatus, TaskType
from rota.services.tasks import TaskService

router = APIRouter(prefix="/api/v1", tags=["tasks"])


def _svc(request: Request) -> TaskService:
    return request.app.state.runtime.tasks


def _events(rows) -> list[EventPublic]:
    return [
        EventPublic(id=e.id, task_id=e.task_id, task_name=e.task_name, kind=e.kind, message=e.message, data=e.data or {}, at=e.at)
        for e in rows
    ]


@router.post("/tasks", status_code=201, response_model=TaskPublic, summary="Create a task (idle)")
def create_task(body: TaskCreate, request: Request) -> TaskPublic:
    return _svc(request).create(body)


@router.get("/tasks", summary="List tasks")
def list_tasks(
    request: Request,
    search: str | None = Query(None, description="substring of the name"),
    status: TaskStatus | None = None,
    type: TaskType | None = None,
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> dict:
    items, total = _svc(request).list(search, status, type, limit, offset)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/tasks/{ref}", response_model=TaskPublic, summary="Get a task by id or name")
def get_task(ref: str, request: Request) -> TaskPublic:
    return _svc(request).get(ref)


@router.patch("/tasks/{ref}", response_model=TaskPublic, summary="Partially update a task")
def update_task(ref: str, body: TaskUpdate, request: Request) -> TaskPublic:
    return _svc(request).update(ref, body)


@router.delete("/tasks/{ref}", status_code=204, summary="Delete a task and tear down its application")
def delete_task(ref: str, request: Request) -> Response:
    _svc(request).delete(ref)
    return Response(status_code=204)


@router.post("/tasks/{ref}/activate", response_model=TaskPublic, summary="Schedule the task's fires")
def activate_task(ref: str, request: Request) -> TaskPublic:
    return _svc(request).activate(ref)


@router.post("/tasks/{ref}/deactivate", response_model=TaskPublic, summary="Stop scheduling fires")
def deactivate_task(ref: str, request: Request) -> TaskPublic:
    return _svc(request).deactivate(ref)


@router.get("/tasks/{ref}/events", response_model=list[EventPublic], summary="Deployment events of a task, in order")
def task_events(
    ref: str, request: Request, after_id: int = Query(0, ge=0), limit: int = Query(1000, ge=1, le=10000)
) -> list[EventPublic]:
    return _events(_svc(request).events(ref, limit, after_id))


@router.get("/events", response_model=list[EventPublic], summary="All events (deleted tasks' included)")
def all_events(
    request: Request, task_name: str | None = None, after_id: int = Query(0, ge=0), limit: int = Query(1000, ge=1, le=10000)
) -> list[EventPublic]:
    return _events(_svc(request).all_events(task_name, limit, after_id))
