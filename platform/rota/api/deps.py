"""Request dependencies: the runtime's services and the caller's identity."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from rota.domain.errors import Unauthorized
from rota.services.auth import Principal


def principal(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer <key>`` (401 without a valid key)."""
    return request.app.state.runtime.auth.authenticate(request.headers.get("authorization"))


def internal(request: Request) -> None:
    """The cluster-internal token (the gateway's), not a user key."""
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    expected = request.app.state.runtime.internal_token
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("the cluster-internal token is required", field="Authorization")


Who = Annotated[Principal, Depends(principal)]
