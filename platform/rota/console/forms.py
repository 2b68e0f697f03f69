"""Form fields to API bodies and API errors back to form fields: pure, no I/O.

The console's forms are named after the API's fields, so a validation error from the
same pydantic models the REST API uses lands next to the input it names. The launch
wizard fills two bodies, an endpoint's and its task's; the task's ``name`` is the form's
``task_name``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from rota.domain.endpoints import EndpointCreate
from rota.domain.errors import RotaError, field_of, from_validation
from rota.domain.tasks import MAX_ENTRIES, TaskCreate, TaskUpdate

ENTRY_ROWS = 4  # schedule rows the wizard shows (blank ones are ignored)
ENGINE_FIELDS = ("max_token_count", "max_input_length", "max_batch_size")
TASK_FIELDS = {"name": "task_name"}
ENTRY = re.compile(r"\bentr(?:y|ies) (\d+)")  # a task field whose form input is named otherwise


@dataclass
class Launch:
    """A launch wizard's state: the raw values (to show again) and what they make."""

    values: dict[str, str]
    endpoint: EndpointCreate | None = None
    task: TaskCreate | None = None
    errors: dict[str, str] = field(default_factory=dict)
    rows: list[int] = field(default_factory=list)  # the form row of each schedule entry

    @property
    def ok(self) -> bool:
        return not self.errors and self.endpoint is not None and self.task is not None


def _int(values: Mapping[str, str], name: str, errors: dict[str, str]) -> int | None:
    raw = (values.get(name) or "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        errors[name] = f"{name}: {raw[:20]!r} is not a whole number"
        return None


def row_numbers(values: Mapping[str, str], group: str, fields: tuple[str, ...], limit: int) -> list[int]:
    """The numbers of the form's rows ``<group>.<n>.<field>`` below ``limit``, in order:
    only ASCII digits count, so a crafted name can neither crash nor blow up the form."""
    pattern = re.compile(rf"{group}\.([0-9]{{1,5}})\.(?:{'|'.join(fields)})")
    return sorted({n for k in values if (m := pattern.fullmatch(k)) and (n := int(m.group(1))) < limit})


SCHEDULE_FIELDS = ("time", "min_replicas", "max_replicas")


def schedule_of(values: Mapping[str, str], errors: dict[str, str]) -> tuple[list[dict[str, Any]], list[int]]:
    """The schedule's entries from its form rows, and the row each came from: a row left
    blank is not an entry (an error about entry N is shown next to its row)."""
    entries, rows = [], []
    for i in row_numbers(values, "schedule", SCHEDULE_FIELDS, MAX_ENTRIES):
        at = (values.get(f"schedule.{i}.time") or "").strip()
        lo = _int(values, f"schedule.{i}.min_replicas", errors)
        hi = _int(values, f"schedule.{i}.max_replicas", errors)
        if at or lo is not None or hi is not None:
            entries.append({"time": at, "min_replicas": lo, "max_replicas": hi})
            if values.get(f"schedule.{i}.ready_by") == "on":  # ready by this time: start early
                entries[-1]["ready_by"] = True
            rows.append(i)
    if not entries:
        errors.setdefault("schedule.0.time", "schedule: give at least one time with its min and max replicas")
    return entries, rows


def schedule_rows(values: Mapping[str, str]) -> range:
    """As many rows as the schedule has, and one blank for one more (at least ENTRY_ROWS)."""
    given = row_numbers(values, "schedule", SCHEDULE_FIELDS, MAX_ENTRIES)
    return range(min(MAX_ENTRIES, max([ENTRY_ROWS - 2, *given]) + 2))


def read_task_edit(values: Mapping[str, str]) -> tuple[TaskUpdate | None, dict[str, str], list[int]]:
    """A task's schedule edit (type, timezone, entries) as the PATCH the API takes, the
    errors so far, and the form row of each entry (for the errors the service finds)."""
    errors: dict[str, str] = {}
    entries, rows = schedule_of(values, errors)
    body: dict[str, Any] = {"type": values.get("type") or None, "timezone": values.get("timezone", "").strip()}
    body |= {"schedule": entries, "ready_by": False}  # each row's box says whether it is ready_by: none inherits
    return _validated(TaskUpdate, body, errors, rows, None), errors, rows


def read_task(values: Mapping[str, str]) -> tuple[TaskCreate | None, dict[str, str], list[int]]:
    """A new task over an endpoint of the project, or over an application in serve_apps/
    (file path and deployment name: the task owns it), as the API's create body."""
    errors: dict[str, str] = {}
    entries, rows = schedule_of(values, errors)
    body: dict[str, Any] = {"name": values.get("task_name", "").strip(), "type": values.get("type") or None}
    if values.get("target") == "application":
        body |= {
            "file_path": values.get("file_path", "").strip() or None,
            "deployment_name": values.get("deployment_name", "").strip() or None,
        }
    else:
        body["endpoint"] = values.get("endpoint", "").strip() or None
    body |= {"timezone": values.get("timezone", "").strip(), "schedule": entries}
    return _validated(TaskCreate, body, errors, rows, TASK_FIELDS), errors, rows


Model = TypeVar("Model", TaskCreate, TaskUpdate)


def _validated(
    model: type[Model], body: dict[str, Any], errors: dict[str, str], rows: list[int], rename: Mapping[str, str] | None
) -> Model | None:
    """``body`` as ``model``, or None with its errors added (each on its form field or row);
    None too when the form had errors already."""
    try:
        out = model.model_validate(body)
    except ValidationError as e:
        for where, message in validation_errors(e, rename, rows).items():
            errors.setdefault(where, message)
        return None
    return None if errors else out


def validation_errors(
    err: ValidationError, rename: Mapping[str, str] | None = None, index: list[int] | None = None
) -> dict[str, str]:
    """Every error of a pydantic validation, keyed by the form field it names."""
    out: dict[str, str] = {}
    for e in err.errors():
        where, message = at_row(field_of(e.get("loc", ())) or "", from_validation([e]).message, index)
        out.setdefault((rename or {}).get(where, where), message)
    return out


def at_row(where: str, message: str, index: list[int] | None) -> tuple[str, str]:
    """An error about schedule entry N, moved to the form row it came from (entries are
    numbered as given; a blank row in between keeps its form number)."""
    head, _, rest = where.partition(".")
    if head != "schedule" or index is None:
        return where, message
    named = ENTRY.search(message) if not rest else None  # a check of the whole list says "entry 1 time: ..."
    n, _, tail = (named.group(1) if named else rest).partition(".")
    if not (n.isdigit() and int(n) < len(index)):
        return where, message
    row = f"schedule.{index[int(n)]}.{tail or 'time'}"
    if message.startswith(f"{where}:"):
        message = row + message[len(where) :]
    return row, message


def field_error(err: RotaError, rename: Mapping[str, str] | None = None, index: list[int] | None = None) -> dict[str, str]:
    where, message = at_row(err.field or "form", err.message, index)
    return {(rename or {}).get(where, where): message}


def read_launch(values: Mapping[str, str]) -> Launch:
    """The wizard's values as an endpoint (scaled to zero until its schedule fires, at
    most the schedule's largest bound) and an idle task that drives it."""
    raw = {k: str(v) for k, v in values.items()}
    errors: dict[str, str] = {}
    entries, rows = schedule_of(raw, errors)
    engine = {k: v for k in ENGINE_FIELDS if (v := _int(raw, f"engine.{k}", errors)) is not None}
    highest = max((e["max_replicas"] for e in entries if isinstance(e["max_replicas"], int)), default=1)
    endpoint_body: dict[str, Any] = {
        "name": raw.get("name", "").strip(),
        "template": raw.get("template") or None,
        "flavor": raw.get("flavor") or None,
        "gpu_type": raw.get("gpu_type") or None,
        "gpu_count": _int(raw, "gpu_count", errors),
        "scaling": {"min_replicas": 0, "max_replicas": max(1, highest)},
        "engine": engine,
    }
    if raw.get("routing_key", "").strip():
        endpoint_body["routing_key"] = raw["routing_key"].strip()
    launch = Launch(raw, rows=rows)
    try:
        launch.endpoint = EndpointCreate.model_validate(endpoint_body)
    except ValidationError as e:
        errors.update(validation_errors(e))
    task_body = {
        "name": raw.get("task_name", "").strip(),
        "endpoint": endpoint_body["name"] or "-",
        "type": raw.get("type") or None,
        "timezone": raw.get("timezone", "").strip(),
        "schedule": entries,
    }
    try:
        launch.task = TaskCreate.model_validate(task_body)
    except ValidationError as e:
        for where, message in validation_errors(e, TASK_FIELDS, rows).items():
            errors.setdefault(where, message)
    launch.errors = errors
    return launch


LAUNCH_INPUTS = frozenset(
    {"template", "flavor", "gpu_type", "gpu_count", "name", "routing_key", "task_name", "type", "timezone", "schedule"}
    | {f"engine.{f}" for f in ENGINE_FIELDS}
)


TASK_INPUTS = frozenset({"task_name", "target", "endpoint", "file_path", "deployment_name", "type", "timezone", "schedule"})


def unplaced(errors: Mapping[str, str], inputs: frozenset[str]) -> list[str]:
    """Messages about no input on the form (they are shown at its top, never lost)."""
    return [m for k, m in errors.items() if k not in inputs and not k.startswith("schedule.")]


def hidden_fields(values: Mapping[str, str], skip: Iterable[str] = ()) -> list[tuple[str, str]]:
    """The wizard's values carried through the summary step as hidden inputs."""
    return [(k, v) for k, v in values.items() if k not in set(skip) and k != "csrf_token" and k != "action"]
