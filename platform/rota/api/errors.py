"""One mapping from errors to JSON: ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from rota.domain.errors import RotaError


def install(app: FastAPI) -> None:
    @app.exception_handler(RotaError)
    async def _domain(_: Request, exc: RotaError) -> JSONResponse:
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            errors.append({"field": ".".join(loc) or None, "message": msg, "type": err.get("type")})
        first = errors[0] if errors else {"field": None, "message": "invalid request"}
        message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
        body = {"error": {"code": "invalid_input", "message": message, "field": first["field"]}, "errors": errors}
        return JSONResponse(body, status_code=422)
