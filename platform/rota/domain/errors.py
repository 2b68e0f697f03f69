"""Domain errors: data with a code, an HTTP status and the field at fault.

Services raise these; one handler in ``rota.api`` turns them into
``{"error": {"code", "message", "field"}}``. Nothing below the API raises HTTP errors.
``from_validation`` is the one formatter from pydantic's errors to that shape (the API,
PATCH merges and the CLI all use it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class RotaError(Exception):
    code = "error"
    status_code = 400

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "field": self.field}


class InvalidInput(RotaError):
    code = "invalid_input"
    status_code = 422


class NotFound(RotaError):
    code = "not_found"
    status_code = 404


class Conflict(RotaError):
    code = "conflict"
    status_code = 409


class Unauthorized(RotaError):
    """No key, an unknown key or a revoked key."""

    code = "unauthorized"
    status_code = 401


class Forbidden(RotaError):
    """The key is valid but may not do this (e.g. an option only admin keys may use)."""

    code = "forbidden"
    status_code = 403


class TooLarge(RotaError):
    code = "too_large"
    status_code = 413


class Busy(RotaError):
    """Too much of something at once: try again later."""

    status_code = 429


class RayUnavailable(RotaError):
    """Ray (its dashboard REST API) could not be reached, or failed on its side."""

    code = "ray_unavailable"
    status_code = 503


class RayTimedOut(RayUnavailable):
    """Ray did not answer in time: what it was sent may or may not have been applied."""


class RayRejected(RotaError):
    """Ray answered a PUT with a 4xx: the configuration itself is wrong."""

    code = "ray_rejected"
    status_code = 502


def field_of(loc: Sequence[Any]) -> str | None:
    """A pydantic error location as a dotted field (``schedule.0.max_replicas``)."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or None


def from_validation(errors: Sequence[Any]) -> InvalidInput:
    """The first of pydantic's errors as a domain error naming its field."""
    if not errors:
        return InvalidInput("invalid input")
    err = errors[0]
    where = field_of(err.get("loc", ()))
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return InvalidInput(f"{where}: {msg}" if where else msg, field=where)
