"""Domain errors: data with a code, an HTTP status and the field at fault.

Services raise these; one handler in ``rota.api`` turns them into
``{"error": {"code", "message", "field"}}``. Nothing below the API raises HTTP errors.
"""

from __future__ import annotations


class RotaError(Exception):
    code = "error"
    status_code = 400

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict:
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


class InvalidTransition(RotaError):
    code = "invalid_transition"
    status_code = 409


class RayUnavailable(RotaError):
    """Ray (its dashboard REST API) could not be reached or refused a request."""

    code = "ray_unavailable"
    status_code = 503


class Unauthorized(RotaError):
    """No key, an unknown key or a revoked key."""

    code = "unauthorized"
    status_code = 401


class Forbidden(RotaError):
    code = "forbidden"
    status_code = 403
