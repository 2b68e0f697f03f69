"""``/internal/v1``: what the cluster calls. The routing table needs the gateway's token;
a starting replica reports its phase, and a running one its figures, with its own
endpoint's token, for that endpoint only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field

from rota.api.deps import bearer, gateway, runtime
from rota.domain.errors import Unauthorized
from rota.domain.names import Strict
from rota.domain.requests import GatewayBatch
from rota.domain.status import Phase

router = APIRouter(prefix="/internal/v1", tags=["internal"], include_in_schema=False)


class PhaseReport(Strict):
    phase: Phase
    routing_key: str | None = None  # sent by older replicas; the token says which endpoint it is


@router.post("/phase", status_code=204)
def report_phase(body: PhaseReport, request: Request, token: Annotated[str, Depends(bearer)]) -> Response:
    """A starting endpoint replica says what it is doing (``serve_apps/serve.py``)."""
    if not runtime(request).cluster.report_phase(token, body.phase):
        raise Unauthorized("not an endpoint's token", field="Authorization")
    return Response(status_code=204)


class ReplicaReport(Strict):
    replica: str = Field(min_length=1, max_length=128)
    cpu_percent: float | None = Field(None, ge=0, le=100_000)  # of one core, summed over its processes
    memory_bytes: float | None = Field(None, ge=0, le=2**60)
    gpu_percent: float | None = Field(None, ge=0, le=100)
    gpu_memory_bytes: float | None = Field(None, ge=0, le=2**60)
    kv_cache_usage: float | None = Field(None, ge=0, le=1)
    engine_running: float | None = Field(None, ge=0, le=1e9)
    engine_waiting: float | None = Field(None, ge=0, le=1e9)


@router.post("/replica-stats", status_code=204)
def report_stats(body: ReplicaReport, request: Request, token: Annotated[str, Depends(bearer)]) -> Response:
    """A running endpoint replica's figures (``serve_apps/_replica_stats.py``)."""
    if not runtime(request).cluster.report_stats(token, body.replica, body.model_dump(exclude={"replica"})):
        raise Unauthorized("not an endpoint's token", field="Authorization")
    return Response(status_code=204)


@router.post("/requests", dependencies=[Depends(gateway)])
def ingest_requests(body: GatewayBatch, request: Request) -> dict[str, int]:
    """A gateway's batch of request records (each stored once however often it is sent)."""
    replica = request.headers.get("x-rota-gateway", "gateway")[:128]
    return runtime(request).requests.ingest(body, replica)  # type: ignore[no-any-return]


@router.get("/routing", dependencies=[Depends(gateway)])
def routing(request: Request) -> dict[str, Any]:
    """Active key hashes -> project, and every endpoint's route, token and status."""
    rt = runtime(request)
    return rt.cluster.routing_table(rt.auth.active_keys())  # type: ignore[no-any-return]
