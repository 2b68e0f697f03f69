"""``/api/v1/templates`` and ``/api/v1/endpoints``: dedicated endpoints of the caller's project."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from rota.api.deps import Who
from rota.api.tasks import _events
from rota.catalog import Template
from rota.domain.endpoints import (
    EndpointCreate,
    EndpointPublic,
    EndpointStatus,
    EndpointUpdate,
)
from rota.domain.models import MAX_ID, EventPublic
from rota.services.endpoints import EndpointService

router = APIRouter(prefix="/api/v1", tags=["endpoints"])


def _svc(request: Request) -> EndpointService:
    return request.app.state.runtime.endpoints


@router.get("/templates", response_model=list[Template], summary="Model templates an endpoint can be created from")
def list_templates(request: Request, who: Who) -> list[Template]:
    return request.app.state.runtime.catalog.templates


@router.get("/templates/{name}", response_model=Template, summary="One template")
def get_template(name: str, request: Request, who: Who) -> Template:
    return request.app.state.runtime.catalog.get(name)


@router.post("/endpoints", status_code=201, response_model=EndpointPublic, summary="Create a dedicated endpoint")
def create_endpoint(body: EndpointCreate, request: Request, who: Who) -> EndpointPublic:
    return _svc(request).create(who, body)


@router.get("/endpoints", summary="List endpoints (search by name, filter by status, paginated)")
def list_endpoints(
    request: Request, who: Who, search: str | None = Query(None, description="substring of the name"),
    status: EndpointStatus | None = None, limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0, le=MAX_ID),
) -> dict:  # fmt: skip
    items, total = _svc(request).list(who, search, status, limit, offset)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/endpoints/{ref}", response_model=EndpointPublic, summary="Get an endpoint by id or name")
def get_endpoint(ref: str, request: Request, who: Who) -> EndpointPublic:
    return _svc(request).get(who, ref)


@router.patch("/endpoints/{ref}", response_model=EndpointPublic, summary="Partially update an endpoint")
def update_endpoint(ref: str, body: EndpointUpdate, request: Request, who: Who) -> EndpointPublic:
    return _svc(request).update(who, ref, body)


@router.delete("/endpoints/{ref}", status_code=204, summary="Delete an endpoint: its application is removed")
def delete_endpoint(ref: str, request: Request, who: Who) -> Response:
    _svc(request).delete(who, ref)
    return Response(status_code=204)


@router.post("/endpoints/{ref}/stop", response_model=EndpointPublic, summary="Stop: release all replicas")
def stop_endpoint(ref: str, request: Request, who: Who) -> EndpointPublic:
    return _svc(request).stop(who, ref)


@router.post("/endpoints/{ref}/start", response_model=EndpointPublic, summary="Start a stopped endpoint")
def start_endpoint(ref: str, request: Request, who: Who) -> EndpointPublic:
    return _svc(request).start(who, ref)


@router.get("/endpoints/{ref}/events", response_model=list[EventPublic], summary="Deployment events of an endpoint")
def endpoint_events(
    ref: str, request: Request, who: Who, after_id: int = Query(0, ge=0, le=MAX_ID), limit: int = Query(1000, ge=1, le=10000)
) -> list[EventPublic]:
    return _events(_svc(request).events(who, ref, limit, after_id))
