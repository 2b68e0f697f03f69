"""``/internal/v1``: what the gateway application reads (cluster-internal token only)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from rota.api.deps import internal

router = APIRouter(prefix="/internal/v1", tags=["internal"], dependencies=[Depends(internal)], include_in_schema=False)


@router.get("/routing")
def routing(request: Request) -> dict:
    """Active key hashes -> project, and every endpoint's route and status."""
    rt = request.app.state.runtime
    return rt.endpoints.routing_table(rt.auth.active_key_hashes(), rt.auth.project_names())
