"""Create an endpoint for a custom model: a Hugging Face repo (and revision) or a local
directory, the machine, LLM, tokenizer and system settings, scaling down to zero,
environment variables, and (if asked) an idle task that schedules it; then a summary with
an edit button per section, then Create."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from rota.catalog import CUSTOM_GPU_COUNTS, CUSTOM_GPU_TYPES
from rota.console.forms import field_error, hidden_fields, read_task, row_numbers, schedule_rows, unplaced, validation_errors
from rota.console.launch import ZONES, endpoint_and_task
from rota.console.web import Form, Who, render, rt, see_other
from rota.domain.endpoints import EndpointCreate
from rota.domain.errors import RotaError
from rota.domain.tasks import TaskCreate
from rota.services.auth import Principal

router = APIRouter(prefix="/console")
ENGINE_INTS = ("max_token_count", "max_input_length", "max_batch_size", "max_queued_requests")
ENGINE_FLAGS = ("skip_special_tokens", "add_special_tokens", "enable_content_logging")
SCALING = ("min_replicas", "max_replicas", "cooldown_period_s")
ENV_ROWS = 2
MAX_ENV = 64  # variables one form holds
INPUTS = frozenset(
    {"name", "routing_key", "source", "hf_model_repo", "revision", "model_path", "gpu_type", "gpu_count", "env"}
    | {"scheduled", "task_name", "type", "timezone", "schedule"}
    | {f"engine.{f}" for f in ENGINE_INTS + ENGINE_FLAGS}
    | {f"scaling.{f}" for f in SCALING}
)
DEFAULTS = {
    "source": "hf",
    "gpu_type": "cpu",
    "gpu_count": "0",
    "scaling.min_replicas": "0",
    "scaling.max_replicas": "1",
    "scaling.cooldown_period_s": "300",
    "type": "daily",
}


def _env_rows(values: dict[str, str]) -> int:
    given = row_numbers(values, "env", ("name", "value"), MAX_ENV)
    return min(MAX_ENV, max([ENV_ROWS - 1, *given]) + 1)


def read_model(values: dict[str, str]) -> tuple[EndpointCreate | None, dict[str, str]]:
    """The form as the API's create body, validated by the API's own model."""
    body: dict[str, Any] = {"name": values.get("name", "").strip()}
    if values.get("routing_key", "").strip():
        body["routing_key"] = values["routing_key"].strip()
    if values.get("source") == "local":
        body["model_path"] = values.get("model_path", "").strip() or None
    else:
        body["hf_model_repo"] = values.get("hf_model_repo", "").strip() or None
        if values.get("revision", "").strip():
            body["revision"] = values["revision"].strip()
    body["gpu_type"] = values.get("gpu_type") or None
    body["gpu_count"] = values.get("gpu_count") or None
    engine: dict[str, Any] = {f: values[f"engine.{f}"].strip() for f in ENGINE_INTS if values.get(f"engine.{f}", "").strip()}
    engine |= {f: values[f"engine.{f}"] == "yes" for f in ENGINE_FLAGS if values.get(f"engine.{f}") in ("yes", "no")}
    body["engine"] = engine
    body["scaling"] = {f: values[f"scaling.{f}"].strip() for f in SCALING if values.get(f"scaling.{f}", "").strip()}
    env = {}
    for i in range(_env_rows(values)):
        name, value = values.get(f"env.{i}.name", "").strip(), values.get(f"env.{i}.value", "")
        if name:
            env[name] = value
    body["env"] = env
    try:
        return EndpointCreate.model_validate(body), {}
    except ValidationError as e:
        return None, validation_errors(e)


def _form(
    request: Request,
    who: Principal,
    values: dict[str, str],
    errors: dict[str, str],
    status_code: int = 200,
    section: str | None = None,
) -> Response:
    errors = {("env" if k.startswith("env.") else k): v for k, v in errors.items()}  # a variable's error: by the variables
    return render(
        request,
        "endpoint_new.html",
        who,
        status_code,
        values=values,
        errors=errors,
        unplaced=unplaced(errors, INPUTS),
        gpu_types=CUSTOM_GPU_TYPES,
        gpu_counts=CUSTOM_GPU_COUNTS,
        env_rows=range(_env_rows(values)),
        zones=ZONES,
        rows=schedule_rows(values),
        section=section,
    )


def read_schedule(values: dict[str, str], endpoint: str) -> tuple[TaskCreate | None, dict[str, str], list[int]]:
    """The idle task that drives the new endpoint, if the form asks for one."""
    if values.get("scheduled") != "yes":
        return None, {}, []
    return read_task({**values, "target": "endpoint", "endpoint": endpoint or "-"})


@router.get("/new/endpoint")
def new_page(request: Request, who: Who) -> Response:
    return _form(request, who, dict(DEFAULTS), {})


@router.post("/new/endpoint")
def new(request: Request, who: Who, data: Form) -> Response:
    action = data.get("action", "review")
    values = {k: v for k, v in data.items() if k not in ("action", "csrf_token")}
    if action == "add-env":  # Add variable: one more row (up to MAX_ENV), the values kept
        if (n := _env_rows(values)) < MAX_ENV:
            values[f"env.{n}.name"] = ""
        return _form(request, who, values, {}, section="env")
    if action.startswith("edit:"):
        return _form(request, who, values, {}, section=action.removeprefix("edit:"))
    r = rt(request)
    body, errors = read_model(values)
    if body is not None:
        try:
            r.endpoints.builder.endpoint(who, body, body.routing_key or "preview")  # the catalog's and policy's checks
        except RotaError as e:
            errors = field_error(e)
    task, task_errors, rows = read_schedule(values, body.name if body else "-")
    if task is not None and not errors:
        try:
            r.tasks.check(who, task)
        except RotaError as e:
            task_errors = field_error(e, {"name": "task_name"}, rows)
    errors = {**task_errors, **errors}
    if body is None or errors:
        return _form(request, who, values, errors, 422)
    if action == "review":
        return render(request, "endpoint_new_summary.html", who, body=body, task=task, hidden=hidden_fields(values))
    if task is not None:
        made, errors, status = endpoint_and_task(request, who, body, task, rows)
        if made is None:
            return _form(request, who, values, errors, status)
        return see_other(f"/console/tasks/{made.id}?launched=1", request)
    try:
        ep = r.endpoints.create(who, body)
    except RotaError as e:
        return _form(request, who, values, field_error(e), e.status_code)
    return see_other(f"/console/endpoints/{ep.id}", request)
