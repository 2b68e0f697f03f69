"""Endpoints: search and filters, and an endpoint's page with its tabs (Overview,
Deployment events, Request logs, Scaling) and actions (stop, start, delete). Status and
phase refresh in place without reloading."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from rota.console.forms import field_error, validation_errors
from rota.console.web import Form, Who, render, rt, see_other
from rota.domain.endpoints import EndpointUpdate
from rota.domain.errors import RotaError
from rota.domain.status import EndpointStatus
from rota.services.requests import RequestFilter

router = APIRouter(prefix="/console")
PAGE = 50
TABS = ("overview", "events", "requests", "scaling")


@router.get("/")
def home() -> Response:
    return see_other("/console/endpoints")


@router.get("/endpoints")
def endpoints_page(request: Request, who: Who, search: str = "", status: str = "", template: str = "", page: int = 0) -> Response:
    page = max(0, min(page, 100_000))
    chosen = next((s for s in EndpointStatus if s.value == status), None)
    items, total = rt(request).endpoints.list(who, search[:100] or None, chosen, PAGE, page * PAGE)
    if template:  # a filter on the page's rows: templates are few and the page is small
        items = [e for e in items if e.template == template]
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
    request: Request, ref: str, who: Who, tab: str = "overview", search: str = "", status: str = "", cursor: str | None = None
) -> Response:
    r = rt(request)
    ep = r.endpoints.get(who, ref)
    tab = tab if tab in TABS else "overview"
    context: dict[str, Any] = {"ep": ep, "tab": tab, "tabs": TABS, "errors": {}, "values": {}}
    if tab == "events":
        context["events"] = r.events.list(who, 0, 500, endpoint_id=ep.id)[::-1]
    elif tab == "requests":
        f = RequestFilter(search=search[:100] or None, status=status[:16] or None)
        try:
            context["page"] = r.requests.page(who, f, ep.id, cursor[:200] if cursor else None, None, PAGE)
        except RotaError as e:  # a malformed cursor or status filter: said on the page
            context["page"], context["filter_error"] = None, e.message
        context["filters"] = {"search": search[:100], "status": status[:16]}
    elif tab == "scaling":
        context["drivers"] = [t for t in r.tasks.list(who, None, None, None, 1000, 0)[0] if t.endpoint and t.endpoint.id == ep.id]
    return render(request, "endpoint.html", who, **context)


@router.get("/endpoints/{ref}/status")
def endpoint_status(request: Request, ref: str, who: Who) -> Response:
    """The status block alone: the endpoint page polls it (htmx) to stay current."""
    return render(request, "_endpoint_status.html", who, ep=rt(request).endpoints.get(who, ref))


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
    return render(request, "endpoint.html", who, 422, ep=ep, tab="scaling", tabs=TABS, errors=errors, values=values, drivers=[])
