"""Tasks: the searchable list with Activate / Deactivate, and a task's page (schedule,
next fires in local time and UTC, run history, events, delete)."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response

from rota.console.forms import TASK_FIELDS, TASK_INPUTS, field_error, read_task, read_task_edit, schedule_rows, unplaced
from rota.console.launch import ZONES
from rota.console.web import Form, Who, choice, console_url, render, rt, see_other
from rota.domain.errors import RotaError
from rota.domain.schedule import ScheduleSpec, TaskType, to_local
from rota.domain.tasks import TaskPublic, TaskStatus
from rota.domain.usage import DayBounds, day_bounds
from rota.services.auth import Principal
from rota.services.task_queries import TaskFilter

router = APIRouter(prefix="/console")
PAGE = 50


@router.get("/tasks")
def tasks_page(
    request: Request, who: Who, search: str = "", status: str = "", type: str = "", timezone: str = "", page: int = 0
) -> Response:
    page = max(0, min(page, 100_000))
    zone = timezone if timezone in ZONES else None
    f = TaskFilter(search[:100] or None, choice(TaskStatus, status), choice(TaskType, type), zone)
    items, total = rt(request).tasks.list(who, f, PAGE, page * PAGE)
    return render(
        request,
        "tasks.html",
        who,
        tasks=items,
        total=total,
        page=page,
        pages=(total + PAGE - 1) // PAGE,
        filters={"search": search[:100], "status": status, "type": type, "timezone": zone or ""},
        statuses=[s.value for s in TaskStatus],
        types=[t.value for t in TaskType],
        zones=ZONES,
    )


@router.get("/new/task")
def new_task_page(request: Request, who: Who, endpoint: str = "") -> Response:
    values = {"type": "daily", "target": "endpoint", "endpoint": endpoint[:63]}
    return _new_form(request, who, values, {})


@router.post("/new/task")
def new_task(request: Request, who: Who, data: Form) -> Response:
    """An idle task over an endpoint, or over an application in serve_apps/ it owns."""
    r = rt(request)
    task, errors, rows = read_task(data)
    if task is not None:
        try:
            made = r.tasks.create(who, task)
            return see_other(f"/console/tasks/{made.id}", request)
        except RotaError as e:
            errors = field_error(e, TASK_FIELDS, rows)
    return _new_form(request, who, data, errors, 422)


def _new_form(
    request: Request, who: Principal, values: dict[str, str], errors: dict[str, str], status_code: int = 200
) -> Response:
    endpoints = rt(request).endpoints.list(who, None, None, 500, 0)[0]
    return render(
        request,
        "task_new.html",
        who,
        status_code,
        values=values,
        errors=errors,
        zones=ZONES,
        rows=schedule_rows(values),
        endpoints=[e for e in endpoints if e.owner_task is None],
        unplaced=unplaced(errors, TASK_INPUTS),
    )


@router.get("/tasks/{ref}")
def task_page(request: Request, ref: str, who: Who, launched: int = 0) -> Response:
    r = rt(request)
    task = r.tasks.get(who, ref)
    return render(
        request,
        "task.html",
        who,
        task=task,
        week=week(task, r.tasks.clock()),
        runs=r.tasks.runs(who, task.id, 50),
        events=r.events.list(who, 0, 200, task_id=task.id, newest_first=True),
        launched=bool(launched),
    )


@router.post("/tasks/{ref}/activate")
def activate(request: Request, ref: str, who: Who, data: Form) -> Response:
    return _after(request, who, rt(request).tasks.activate(who, ref), data)


@router.post("/tasks/{ref}/deactivate")
def deactivate(request: Request, ref: str, who: Who, data: Form) -> Response:
    return _after(request, who, rt(request).tasks.deactivate(who, ref), data)


def _after(request: Request, who: Principal, task: TaskPublic, data: dict[str, str]) -> Response:
    """From the list with htmx: the task's row alone, swapped in place; else back to a page."""
    if request.headers.get("hx-request") and data.get("back") == "/console/tasks":
        return render(request, "_task_row.html", who, t=task)
    return see_other(console_url(data.get("back"), f"/console/tasks/{task.id}"), request)


@router.get("/tasks/{ref}/edit")
def edit_page(request: Request, ref: str, who: Who) -> Response:
    task = rt(request).tasks.get(who, ref)
    values = {"type": task.type.value, "timezone": task.timezone}
    for i, e in enumerate(task.schedule):
        values |= {
            f"schedule.{i}.time": e.time,
            f"schedule.{i}.min_replicas": str(e.min_replicas),
            f"schedule.{i}.max_replicas": str(e.max_replicas),
            f"schedule.{i}.ready_by": "on" if (task.ready_by if e.ready_by is None else e.ready_by) else "",
        }
    return _edit_form(request, who, task, values, {})


@router.post("/tasks/{ref}/edit")
def edit(request: Request, ref: str, who: Who, data: Form) -> Response:
    """The schedule's type, timezone and entries, as a PATCH: an active task's next fires
    follow at once."""
    r = rt(request)
    patch, errors, rows = read_task_edit(data)
    if patch is not None:
        try:
            task = r.tasks.update(who, ref, patch)
            return see_other(f"/console/tasks/{task.id}", request)
        except RotaError as e:
            errors = field_error(e, index=rows)
    return _edit_form(request, who, r.tasks.get(who, ref), data, errors, 422)


def _edit_form(
    request: Request, who: Principal, task: TaskPublic, values: dict[str, str], errors: dict[str, str], status_code: int = 200
) -> Response:
    return render(
        request,
        "task_edit.html",
        who,
        status_code,
        task=task,
        values=values,
        errors=errors,
        zones=ZONES,
        rows=schedule_rows(values),
    )


@router.post("/tasks/{ref}/delete")
def delete(request: Request, ref: str, who: Who, data: Form) -> Response:
    rt(request).tasks.delete(who, ref)
    return see_other("/console/tasks", request)


def week(task: TaskPublic, now: datetime) -> list[DayBounds]:
    """The bounds the schedule sets through the next seven local days (DST days are 23 or
    25 hours long and drawn so), from the endpoint's bounds now until the first fire."""
    lead = timedelta(seconds=task.cold_start.lead_s if task.cold_start else 0)  # ready_by fires start early
    spec = ScheduleSpec.build(task.type, task.timezone, [e.model_dump() for e in task.schedule], task.ready_by, lead)
    held = task.endpoint.replicas if task.endpoint else None
    before = (held.min or 0, held.max or 0) if held and held.max is not None else (0, 0)
    return day_bounds(spec, to_local(spec.tz, now).date(), 7, before)
