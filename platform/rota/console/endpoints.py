"""Endpoints: search and filters, and an endpoint's page with its tabs (Overview,
Playground, Monitoring, Request logs, Logs, Deployment events, Scaling) and actions
(stop, start, delete). Status and phase refresh in place without reloading."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from rota.api.logs import follow_response
from rota.console.forms import field_error, validation_errors
from rota.console.live import while_signed_in
from rota.console.web import Form, Who, choice, render, rt, see_other, session
from rota.domain.endpoints import EndpointUpdate
from rota.domain.errors import RotaError
from rota.domain.status import EndpointStatus
from rota.services.logs import LogQuery
from rota.services.requests import RequestFilter
from rota.services.task_queries import TaskFilter

router = APIRouter(prefix="/console")
PAGE = 50
TAB_NAMES = {
    "overview": "Overview",
    "playground": "Playground",
    "monitoring": "Monitoring",
    "requests": "Request logs",
    "logs": "Logs",
    "events": "Deployment events",
    "async": "Async invocations",
    "scaling": "Scaling",
}
WINDOWS = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}


@router.get("/")
def home() -> Response:
    return see_other("/console/endpoints")


@router.get("/endpoints")
def endpoints_page(request: Request, who: Who, search: str = "", status: str = "", template: str = "", page: int = 0) -> Response:
    page = max(0, min(page, 100_000))
    chosen = choice(EndpointStatus, status)
    items, total = rt(request).endpoints.list(who, search[:100] or None, chosen, PAGE, page * PAGE, template[:63] or None)
    return render(
        request,
        "endpoints.html",
        who,
        endpoints=items,
        total=total,
        page=page,
        pages=(total + PAGE - 1) // PAGE,
        filters={"search": search[:100], "status": status, "template": template[:63]},
        statuses=[s.value for s in EndpointStatus],
        templates=[t.name for t in rt(request).catalog.templates],
    )


@router.get("/endpoints/{ref}")
def endpoint_page(
    request: Request,
    ref: str,
    who: Who,
    tab: str = "overview",
    search: str = "",
    status: str = "",
    cursor: str | None = None,
    window: str = "1h",
) -> Response:
    r = rt(request)
    ep = r.endpoints.get(who, ref)
    tab = tab if tab in TAB_NAMES else "overview"
    context: dict[str, Any] = {"ep": ep, "tab": tab, "tabs": TAB_NAMES, "errors": {}, "values": {}}
    if tab == "events":
        context["events"] = r.events.list(who, 0, 200, endpoint_id=ep.id, newest_first=True)
    elif tab == "requests":
        f = RequestFilter(search=search[:100] or None, status=status[:16] or None)
        try:
            context["page"] = r.requests.page(who, f, ep.id, cursor[:200] if cursor else None, None, PAGE)
        except RotaError as e:  # a malformed cursor or status filter: said on the page
            context["page"], context["filter_error"] = None, e.message
        context["filters"] = {"search": search[:100], "status": status[:16]}
    elif tab == "monitoring":
        window = window if window in WINDOWS else "1h"
        now = datetime.now(timezone.utc)
        series = r.monitoring.series(who, str(ep.id), now - timedelta(seconds=WINDOWS[window]), now, None)
        context["series"] = series
        context["gpu"] = any(p.gpu_percent is not None for h in series.hardware for p in h.points)
        context["window"], context["windows"] = window, list(WINDOWS)
    elif tab == "async":
        context["queued"] = r.invocations.requests(who, 50, endpoint_id=ep.id).data
        context["batches"] = r.invocations.batches(who, 20, endpoint_id=ep.id).data
    elif tab == "logs":
        context["replicas"] = ep.replicas.ids
    elif tab == "scaling":
        context["drivers"] = r.tasks.list(who, TaskFilter(endpoint_id=ep.id), 100)[0]
    return render(request, "endpoint.html", who, **context)


@router.get("/requests/{request_id:path}")
def request_page(request: Request, request_id: str, who: Who) -> Response:
    """One request log record, every field (the latest with this id the key may see)."""
    record = rt(request).requests.get(who, request_id[:128])
    return render(request, "request.html", who, record=record, fields=record.model_dump(mode="json", by_alias=True))


@router.post("/endpoints/{ref}/stop")
def stop(request: Request, ref: str, who: Who, data: Form) -> Response:
    ep = rt(request).endpoints.stop(who, ref)
    return see_other(f"/console/endpoints/{ep.id}", request)


@router.post("/endpoints/{ref}/start")
def start(request: Request, ref: str, who: Who, data: Form) -> Response:
    ep = rt(request).endpoints.start(who, ref)
    return see_other(f"/console/endpoints/{ep.id}", request)


@router.post("/endpoints/{ref}/delete")
def delete(request: Request, ref: str, who: Who, data: Form) -> Response:
    rt(request).endpoints.delete(who, ref)
    return see_other("/console/endpoints", request)


@router.post("/endpoints/{ref}/scaling")
def scaling(request: Request, ref: str, who: Who, data: Form) -> Response:
    """Edit min, max and cooldown: applied in place (a scaling change never rolls replicas)."""
    r = rt(request)
    values = {k: data.get(k, "").strip() for k in ("min_replicas", "max_replicas", "cooldown_period_s")}
    body: dict[str, object] = {k: v for k, v in values.items() if v}
    errors: dict[str, str] = {}
    try:
        patch = EndpointUpdate.model_validate({"scaling": body})
        ep = r.endpoints.update(who, ref, patch)
        return see_other(f"/console/endpoints/{ep.id}?tab=scaling", request)
    except ValidationError as e:
        errors = {k.removeprefix("scaling."): v for k, v in validation_errors(e).items()}
    except RotaError as e:
        errors = {k.removeprefix("scaling."): v for k, v in field_error(e).items()}
    ep = r.endpoints.get(who, ref)
    return render(
        request, "endpoint.html", who, 422, ep=ep, tab="scaling", tabs=TAB_NAMES, errors=errors, values=values, drivers=[]
    )


@router.get("/endpoints/{ref}/logs/stream")
async def logs_stream(request: Request, ref: str, who: Who, search: str = "", replica: str = "") -> Response:
    """The Logs tab's live tail: the last lines, then new ones (server-sent events)."""
    signed_in = session(request)  # before a follower's slot is taken
    q = LogQuery(None, search[:200] or None, replica[:64] or None, 500)
    return while_signed_in(request, signed_in, await follow_response(request, who, ref, q))
