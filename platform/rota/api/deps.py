"""Request dependencies: the caller's identity and the services, handed to routers."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Request

from rota.domain.errors import Unauthorized
from rota.services.auth import AuthService, Principal
from rota.services.endpoints import EndpointService
from rota.services.events import EventService
from rota.services.requests import RequestLogService
from rota.services.tasks import TaskService


def runtime(request: Request) -> Any:
    return request.app.state.runtime


def bearer(request: Request) -> str:
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing token: send 'Authorization: Bearer <token>'", field="Authorization")
    return token.strip()


def principal(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer <key>`` (401 without a valid key)."""
    return runtime(request).auth.authenticate(request.headers.get("authorization"))  # type: ignore[no-any-return]


def gateway(request: Request) -> None:
    """The gateway's token (cluster-internal), not a user key."""
    if not hmac.compare_digest(bearer(request).encode(), runtime(request).internal_token.encode()):
        raise Unauthorized("the gateway's token is required", field="Authorization")


def _auth(request: Request) -> AuthService:
    return runtime(request).auth  # type: ignore[no-any-return]


def _tasks(request: Request) -> TaskService:
    return runtime(request).tasks  # type: ignore[no-any-return]


def _endpoints(request: Request) -> EndpointService:
    return runtime(request).endpoints  # type: ignore[no-any-return]


def _events(request: Request) -> EventService:
    return runtime(request).events  # type: ignore[no-any-return]


Who = Annotated[Principal, Depends(principal)]
Auth = Annotated[AuthService, Depends(_auth)]
Tasks = Annotated[TaskService, Depends(_tasks)]
Endpoints = Annotated[EndpointService, Depends(_endpoints)]
Events = Annotated[EventService, Depends(_events)]


def _requests(request: Request) -> RequestLogService:
    return runtime(request).requests  # type: ignore[no-any-return]


Requests = Annotated[RequestLogService, Depends(_requests)]
