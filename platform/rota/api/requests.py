"""``/api/v1/.../requests``: the request log of the caller's project."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from rota.api.deps import Endpoints, Requests, Who
from rota.domain.names import MAX_ID
from rota.domain.requests import RequestPage, RequestPublic
from rota.services.requests import RequestFilter

router = APIRouter(prefix="/api/v1", tags=["requests"])


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


def request_filter(
    since: datetime | None = Query(None, description="from this time (ISO 8601; UTC unless it says)"),
    until: datetime | None = Query(None, description="before this time"),
    status: str | None = Query(None, max_length=5, description="a code (429), a class (4xx), `ok` or `error`"),
    key: str | None = Query(None, max_length=16, description="a key's prefix, as `rota keys list` shows it"),
    search: str | None = Query(None, min_length=1, max_length=200, description="in ids, model, error, replica, content"),
) -> RequestFilter:
    return RequestFilter(_utc(since), _utc(until), status, key, search)


Filter = Annotated[RequestFilter, Depends(request_filter)]
Cursor = Query(None, max_length=200, description="`next_cursor` of the previous page")
After = Query(None, ge=0, le=MAX_ID, description="only records stored after this `last_seq`, oldest first (to follow)")
Limit = Query(100, ge=1, le=1000)


@router.get("/endpoints/{ref}/requests", response_model=RequestPage, summary="An endpoint's request log, newest first")
def endpoint_requests(
    ref: str,
    who: Who,
    f: Filter,
    endpoints: Endpoints,
    requests: Requests,
    cursor: str | None = Cursor,
    after: int | None = After,
    limit: int = Limit,
) -> RequestPage:
    return requests.page(who, f, endpoints.get(who, ref).id, cursor, after, limit)


@router.get("/requests", response_model=RequestPage, summary="The project's request log, newest first")
def project_requests(
    who: Who, f: Filter, requests: Requests, cursor: str | None = Cursor, after: int | None = After, limit: int = Limit
) -> RequestPage:
    return requests.page(who, f, None, cursor, after, limit)


@router.get("/requests/{request_id}", response_model=RequestPublic, summary="One request (the latest with this id)")
def get_request(request_id: str, who: Who, requests: Requests) -> RequestPublic:
    return requests.get(who, request_id[:128])
