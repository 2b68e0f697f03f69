"""``/api/v1/templates`` and ``/api/v1/endpoints``: the caller's project's endpoints."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from rota.api.deps import Endpoints, Who, runtime
from rota.catalog import Template
from rota.domain.endpoints import EndpointCreate, EndpointPublic, EndpointUpdate
from rota.domain.names import MAX_ID
from rota.domain.status import EndpointStatus

router = APIRouter(prefix="/api/v1", tags=["endpoints"])


@router.get("/templates", response_model=list[Template], summary="Model templates an endpoint can be created from")
def list_templates(request: Request, who: Who) -> list[Template]:
    return runtime(request).catalog.templates  # type: ignore[no-any-return]


@router.get("/templates/{name}", response_model=Template, summary="One template")
def get_template(name: str, request: Request, who: Who) -> Template:
    return runtime(request).catalog.get(name)  # type: ignore[no-any-return]


@router.post("/endpoints", status_code=201, response_model=EndpointPublic, summary="Create an endpoint")
def create_endpoint(body: EndpointCreate, who: Who, endpoints: Endpoints) -> EndpointPublic:
    return endpoints.create(who, body)


@router.get("/endpoints", summary="List endpoints (search by name, filter by status, paginated)")
def list_endpoints(
    who: Who,
    endpoints: Endpoints,
    search: str | None = Query(None, max_length=100, description="substring of the name"),
    status: EndpointStatus | None = None,
    template: str | None = Query(None, max_length=63, description="only endpoints from this template"),
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_ID),
) -> dict[str, object]:
    items, total = endpoints.list(who, search, status, limit, offset, template)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/endpoints/{ref}", response_model=EndpointPublic, summary="Get an endpoint by id or name")
def get_endpoint(ref: str, who: Who, endpoints: Endpoints) -> EndpointPublic:
    return endpoints.get(who, ref)


@router.patch("/endpoints/{ref}", response_model=EndpointPublic, summary="Partially update an endpoint")
def update_endpoint(ref: str, body: EndpointUpdate, who: Who, endpoints: Endpoints) -> EndpointPublic:
    return endpoints.update(who, ref, body)


@router.delete("/endpoints/{ref}", status_code=204, summary="Delete an endpoint: its application is removed")
def delete_endpoint(ref: str, who: Who, endpoints: Endpoints) -> Response:
    endpoints.delete(who, ref)
    return Response(status_code=204)


@router.post("/endpoints/{ref}/stop", response_model=EndpointPublic, summary="Stop: release all replicas")
def stop_endpoint(ref: str, who: Who, endpoints: Endpoints) -> EndpointPublic:
    return endpoints.stop(who, ref)


@router.post("/endpoints/{ref}/start", response_model=EndpointPublic, summary="Start a stopped endpoint")
def start_endpoint(ref: str, who: Who, endpoints: Endpoints) -> EndpointPublic:
    return endpoints.start(who, ref)
