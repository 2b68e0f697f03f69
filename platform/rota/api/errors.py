"""One mapping from errors to JSON: ``{"error": {"code", "message", "field"}}``, for
domain errors, request validation, and what the framework itself refuses (unknown
routes, wrong methods, bodies it cannot parse)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
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


Page = Callable[[Request, RotaError], Response]


def install(app: FastAPI, pages: tuple[str, Page] | None = None) -> None:
    """``pages``: a path prefix whose errors are shown as pages (the console), and how."""

    def page(request: Request, exc: RotaError, headers: dict[str, str] | None = None) -> Response | None:
        if pages and (request.url.path.rstrip("/") + "/").startswith(pages[0]):
            shown = pages[1](request, exc)
            shown.headers.update(headers or {})  # e.g. Allow on a 405
            return shown
        return None

    @app.exception_handler(RotaError)
    async def _domain(request: Request, exc: RotaError) -> Response:
        return page(request, exc) or JSONResponse({"error": exc.to_dict()}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        shown = page(request, from_validation(exc.errors()))
        if shown is not None:
            return shown
        errors = [
            {"field": field_of(e.get("loc", ())), "message": from_validation([e]).message, "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse({"error": from_validation(exc.errors()).to_dict(), "errors": errors}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        code = _CODES.get(exc.status_code, "error")
        error = RotaError(str(exc.detail))
        error.code, error.status_code = code, exc.status_code
        shown = page(request, error, getattr(exc, "headers", None))
        if shown is not None:
            return shown
        return JSONResponse(
            {"error": {"code": code, "message": str(exc.detail), "field": None}},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
