"""``/internal/v1``: what the gateway application reads (cluster-internal token only)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from rota.api.deps import internal
from rota.domain.endpoints import Phase

router = APIRouter(prefix="/internal/v1", tags=["internal"], dependencies=[Depends(internal)], include_in_schema=False)


class PhaseReport(BaseModel):
    routing_key: str
    phase: Phase


@router.post("/phase", status_code=204)
def report_phase(body: PhaseReport, request: Request) -> Response:
    """A starting endpoint replica says what it is doing (``serve_apps/serve.py``)."""
    request.app.state.runtime.endpoints.report_phase(body.routing_key, body.phase)
    return Response(status_code=204)


@router.get("/routing")
def routing(request: Request) -> dict:
    """Active key hashes -> project, and every endpoint's route and status."""
    rt = request.app.state.runtime
    return rt.endpoints.routing_table(rt.auth.active_key_hashes(), rt.auth.project_names())
