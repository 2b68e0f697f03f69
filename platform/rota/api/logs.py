"""``/api/v1/endpoints/{ref}/logs``: what an endpoint's replicas print."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import datetime, timezone

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from rota.api.deps import Who, runtime
from rota.api.streaming import SSE, HeldStream, Once
from rota.domain.errors import Unauthorized
from rota.domain.logs import LogLine
from rota.services.auth import Principal
from rota.services.logs import LogQuery

router = APIRouter(prefix="/api/v1", tags=["logs"])
KEEPALIVE_S = 15
RECHECK_S = 5.0  # a follower's key is looked up again this often


class LogPage(BaseModel):
    lines: list[LogLine]


@router.get(
    "/endpoints/{ref}/logs",
    response_model=LogPage,
    summary="The replicas' own output (vLLM's, Ray Serve's), merged in time order; follow=true streams (SSE)",
)
async def endpoint_logs(
    ref: str,
    request: Request,
    who: Who,
    since: datetime | None = Query(None, description="from this time (ISO 8601; UTC unless it says)"),
    search: str | None = Query(None, min_length=1, max_length=200, description="lines that contain this"),
    replica: str | None = Query(None, max_length=64, description="one replica's id"),
    limit: int = Query(1000, ge=1, le=10_000, description="the last this many lines"),
    follow: bool = Query(False, description="then keep sending new lines (text/event-stream)"),
) -> LogPage | StreamingResponse:
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    q = LogQuery(since, search, replica, limit)
    if not follow:
        return LogPage(lines=await run_in_threadpool(runtime(request).logs.lines, who, ref, q))
    return await follow_response(request, who, ref, q)


async def follow_response(request: Request, who: Principal, ref: str, q: LogQuery) -> HeldStream:
    """The lines as server-sent events (``data: <LogLine JSON>``), then new ones as they come."""
    service = runtime(request).logs
    await run_in_threadpool(service.target, who, ref)  # a 404 before the stream starts
    service.admit(who)  # a 429 when too many are followed
    release = Once(lambda: service.release(who))

    async def events() -> AsyncIterator[str]:
        idle, checked = 0, time.monotonic()
        try:
            async with aclosing(service.follow(who, ref, q)) as lines:
                async for ln in lines:
                    if await request.is_disconnected():
                        return
                    if time.monotonic() - checked > RECHECK_S:  # a key revoked meanwhile reads no further
                        checked = time.monotonic()
                        try:
                            await run_in_threadpool(runtime(request).auth.principal_of, who.key_id)
                        except Unauthorized:
                            return
                    if ln is None:
                        idle += 1
                        if idle % KEEPALIVE_S == 0:
                            yield ": keep-alive\n\n"
                        continue
                    yield f"data: {ln.model_dump_json()}\n\n"
        finally:
            release()

    return HeldStream(events(), release, **SSE)
