"""``/api/v1/tasks``: schedules, always the caller's project only."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Query, Response

from rota.api.deps import Tasks, Who
from rota.domain.names import MAX_ID
from rota.domain.schedule import TaskType
from rota.domain.tasks import RunPublic, TaskCreate, TaskPublic, TaskStatus, TaskUpdate
from rota.services.task_queries import TaskFilter

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])


@router.post("", status_code=201, response_model=TaskPublic, summary="Create a task (idle)")
def create_task(body: TaskCreate, who: Who, tasks: Tasks) -> TaskPublic:
    return tasks.create(who, body)


@router.get("", summary="List tasks")
def list_tasks(
    who: Who,
    tasks: Tasks,
    search: str | None = Query(None, max_length=100, description="substring of the name"),
    status: TaskStatus | None = None,
    type: TaskType | None = None,
    timezone: str | None = Query(None, max_length=64, description="only tasks in this IANA timezone"),
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_ID),
) -> dict[str, object]:
    items, total = tasks.list(who, TaskFilter(search, status, type, timezone), limit, offset)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/{ref}", response_model=TaskPublic, summary="Get a task by id or name")
def get_task(ref: str, who: Who, tasks: Tasks) -> TaskPublic:
    return tasks.get(who, ref)


@router.patch("/{ref}", response_model=TaskPublic, summary="Partially update a task")
def update_task(ref: str, body: TaskUpdate, who: Who, tasks: Tasks) -> TaskPublic:
    return tasks.update(who, ref, body)


@router.delete("/{ref}", status_code=204, summary="Delete a task (and its own application)")
def delete_task(ref: str, who: Who, tasks: Tasks) -> Response:
    tasks.delete(who, ref)
    return Response(status_code=204)


@router.post("/{ref}/activate", response_model=TaskPublic, summary="Schedule the task's fires")
def activate_task(ref: str, who: Who, tasks: Tasks) -> TaskPublic:
    return tasks.activate(who, ref)


@router.post("/{ref}/deactivate", response_model=TaskPublic, summary="Stop scheduling fires")
def deactivate_task(ref: str, who: Who, tasks: Tasks) -> TaskPublic:
    return tasks.deactivate(who, ref)


@router.get("/{ref}/runs", response_model=list[RunPublic], summary="The task's applied fires, newest first")
def task_runs(ref: str, who: Who, tasks: Tasks, limit: int = Query(100, ge=1, le=1000)) -> Sequence[RunPublic]:
    return tasks.runs(who, ref, limit)
