"""The model catalog and the launch wizard: Resources, then Settings and scheduling,
then a Summary (next fires, projected GPU-hours and cost) and Launch, which creates the
endpoint and its idle task through the same services as the REST API."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytz
from fastapi import APIRouter, Request
from fastapi.responses import Response

from rota.console.forms import LAUNCH_INPUTS, Launch, field_error, hidden_fields, read_launch, schedule_rows, unplaced
from rota.console.web import Form, Who, render, rt, see_other
from rota.domain.endpoints import EndpointCreate
from rota.domain.errors import RotaError
from rota.domain.schedule import ScheduleSpec, next_occurrences, to_local
from rota.domain.tasks import TaskCreate, TaskPublic
from rota.services.auth import Principal
from rota.services.coldstarts import estimate
from rota.services.views import fire_time

router = APIRouter(prefix="/console")
ZONES = pytz.common_timezones
PREVIEW_FIRES = 6
PREVIEW_DAYS = 7


@router.get("/models")
def models(request: Request, who: Who, search: str = "") -> Response:
    needle = search.strip().lower()[:100]
    found = [t for t in rt(request).catalog.templates if not needle or needle in f"{t.name} {t.description} {t.model}".lower()]
    return render(request, "models.html", who, templates=found, search=search[:100])


def _defaults(request: Request, template: str) -> dict[str, str]:
    t = rt(request).catalog.get(template)
    d = t.defaults
    values = {"template": t.name, "flavor": d.flavor, "gpu_type": d.gpu_type, "gpu_count": str(d.gpu_count), "type": "daily"}
    return values


def _form(request: Request, who: Principal, launch: Launch, status_code: int = 200, section: str | None = None) -> Response:
    catalog = rt(request).catalog
    template = next((t for t in catalog.templates if t.name == launch.values.get("template")), None)
    return render(
        request,
        "launch.html",
        who,
        status_code,
        values=launch.values,
        errors=launch.errors,
        unplaced=unplaced(launch.errors, LAUNCH_INPUTS),
        template=template,
        catalog=catalog.templates,
        zones=ZONES,
        rows=schedule_rows(launch.values),
        section=section,
    )


@router.get("/launch")
def launch_page(request: Request, who: Who, template: str | None = None) -> Response:
    values = _defaults(request, template) if template else {"type": "daily"}
    return _form(request, who, Launch(values))


def _checked(request: Request, who: Principal, data: dict[str, str]) -> Launch:
    """The wizard's values, validated as the API validates them (the template, flavor and
    GPUs against the catalog too), without creating anything."""
    launch = read_launch(data)
    if launch.endpoint is not None:
        try:
            rt(request).endpoints.builder.endpoint(who, launch.endpoint, launch.endpoint.routing_key or "preview")
        except RotaError as e:
            launch.errors.update(field_error(e))
    return launch


def _preview(request: Request, who: Principal, launch: Launch) -> dict[str, Any]:
    assert launch.task is not None and launch.endpoint is not None
    task = launch.task
    ep = launch.endpoint
    figures = estimate(rt(request).endpoints.ready, ep.template)  # a new endpoint: nothing measured yet
    schedule = [e.model_dump() for e in task.schedule]
    spec = ScheduleSpec.build(task.type, task.timezone, schedule, task.ready_by, timedelta(seconds=figures.lead_s))
    now = datetime.now(timezone.utc)
    fires = [fire_time(spec, o, figures) for o in next_occurrences(spec, now, PREVIEW_FIRES)]
    template = rt(request).catalog.get(ep.template or "")
    unit = ep.gpu_type or template.defaults.gpu_type
    count = ep.gpu_count if ep.gpu_count is not None else template.defaults.gpu_count
    usage = rt(request).usage
    plan = usage.preview(who, spec, unit, count, dict(template.resources), to_local(spec.tz, now).date(), PREVIEW_DAYS)
    return {"fires": fires, "plan": plan, "timezone": task.timezone}


@router.post("/launch/preview")
def preview(request: Request, who: Who, data: Form) -> Response:
    """The wizard's next fires and projected use as its fields change (htmx), or what is
    still missing: nothing is created."""
    checked = _checked(request, who, data)
    if not checked.ok:
        return render(request, "_preview.html", who, missing=next(iter(checked.errors.values()), None))
    return render(request, "_preview.html", who, **_preview(request, who, checked))


@router.post("/launch")
def launch(request: Request, who: Who, data: Form) -> Response:
    action = data.get("action", "review")
    if action.startswith("edit:"):
        return _form(request, who, Launch(dict(data)), section=action.removeprefix("edit:"))
    checked = _checked(request, who, data)
    if not checked.ok:
        return _form(request, who, checked, 422)
    if action == "review":
        return render(
            request,
            "launch_summary.html",
            who,
            launch=checked,
            hidden=hidden_fields(checked.values),
            **_preview(request, who, checked),
        )
    return _create(request, who, checked)


def _create(request: Request, who: Principal, launch: Launch) -> Response:
    assert launch.endpoint is not None and launch.task is not None
    task, launch.errors, status = endpoint_and_task(request, who, launch.endpoint, launch.task, launch.rows)
    if task is None:
        return _form(request, who, launch, status)
    return see_other(f"/console/tasks/{task.id}?launched=1", request)


def endpoint_and_task(
    request: Request, who: Principal, endpoint: EndpointCreate, task: TaskCreate, rows: list[int]
) -> tuple[TaskPublic | None, dict[str, str], int]:
    """The endpoint, then the idle task that drives it; if the task cannot be created the
    endpoint goes too. (The task, or None with the errors by field and the status.)"""
    r = rt(request)
    try:  # checked first: a failed task would leave the endpoint being deleted, its name held
        r.tasks.check(who, task)
    except RotaError as e:
        return None, field_error(e, {"name": "task_name"}, rows), e.status_code
    if r.tasks.named(who, task.name):
        return None, {"task_name": f"task_name: a task named {task.name!r} already exists"}, 409
    try:
        ep = r.endpoints.create(who, endpoint)
    except RotaError as e:
        return None, field_error(e), e.status_code
    try:
        return r.tasks.create(who, task.model_copy(update={"endpoint": str(ep.id)})), {}, 201
    except RotaError as e:
        errors = field_error(e, {"name": "task_name"}, rows)
        try:
            r.endpoints.delete(who, ep.id)
        except RotaError as gone:  # e.g. another call made a task drive it meanwhile: say so, keep it
            errors["form"] = f"endpoint {ep.name!r} was created and stays: {gone.message}"
        return None, errors, e.status_code
