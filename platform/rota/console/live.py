"""Live status over server-sent events: the endpoint page's status block, sent again
each time what it shows changes (looked at every second), for as long as the page is
open and its key still works."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from rota.console.web import Who, rt, templates
from rota.domain.endpoints import EndpointPublic
from rota.domain.errors import Busy, NotFound, Unauthorized
from rota.services.auth import Principal

router = APIRouter(prefix="/console")
EVERY_S = 1.0
KEEPALIVE_S = 15
PER_KEY = 16  # status streams one key may hold open (tabs of one browser, a few browsers)


class Streams:
    def __init__(self) -> None:
        self._open: Counter[int] = Counter()
        self._lock = threading.Lock()

    def admit(self, who: Principal) -> None:
        with self._lock:
            if self._open[who.key_id] >= PER_KEY:
                raise Busy(f"this key follows {PER_KEY} endpoint pages already: close some", field="stream")
            self._open[who.key_id] += 1

    def release(self, who: Principal) -> None:
        with self._lock:
            self._open[who.key_id] -= 1


streams = Streams()


def sse(event: str, html: str) -> str:
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in html.splitlines()) + "\n"


def status_block(ep: EndpointPublic) -> str:
    return templates.get_template("_endpoint_status.html").render(ep=ep)


@router.get("/endpoints/{ref}/status/stream")
async def status_stream(request: Request, ref: str, who: Who) -> StreamingResponse:
    r = rt(request)
    await run_in_threadpool(r.endpoints.get, who, ref)  # a 404 before the stream starts
    streams.admit(who)

    async def events() -> AsyncIterator[str]:
        last, quiet = "", 0
        try:
            while not await request.is_disconnected():
                try:
                    await run_in_threadpool(r.auth.principal_of, who.key_id)  # a revoked key's page stops here
                    html = status_block(await run_in_threadpool(r.endpoints.get, who, ref))
                except (NotFound, Unauthorized):
                    yield sse("gone", "")
                    return
                if html != last:
                    last, quiet = html, 0
                    yield sse("status", html)
                else:
                    quiet += 1
                    if quiet % KEEPALIVE_S == 0:
                        yield ": keep-alive\n\n"
                await asyncio.sleep(EVERY_S)
        finally:
            streams.release(who)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
