"""One mapping from errors to JSON: ``{"error": {"code", "message", "field"}}``, for
domain errors, request validation, and what the framework itself refuses (unknown
routes, wrong methods, bodies it cannot parse)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from rota.domain.errors import RotaError, field_of, from_validation

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


def install(app: FastAPI) -> None:
    @app.exception_handler(RotaError)
    async def _domain(_: Request, exc: RotaError) -> JSONResponse:
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": field_of(e.get("loc", ())), "message": from_validation([e]).message, "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse({"error": from_validation(exc.errors()).to_dict(), "errors": errors}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "error")
        return JSONResponse(
            {"error": {"code": code, "message": str(exc.detail), "field": None}},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
