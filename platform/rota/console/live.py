"""The console's long-lived responses: live status over server-sent events (the status
block sent again each time what it shows changes, looked at every second), the log
tail, and the limits on how many of them a key, a project and the process hold open.
Each stops once its session is over (signed out, key revoked)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from rota.api.streaming import SSE, HeldStream, Once
from rota.console.session import Session
from rota.console.web import SignInRequired, Who, rt, session, still_valid, templates
from rota.domain.endpoints import EndpointPublic
from rota.domain.errors import Busy, NotFound
from rota.services.auth import Principal

router = APIRouter(prefix="/console")
EVERY_S = 1.0
KEEPALIVE_S = 15
RECHECK_S = 5.0  # a log tail asks again this often whether its session still holds


class Limit:
    """At most so many at once per key, per project, and in all."""

    def __init__(self, what: str, per_key: int, per_project: int, total: int) -> None:
        self.what, self.caps = what, (per_key, per_project, total)
        self._open: Counter[tuple[str, int]] = Counter()
        self._lock = threading.Lock()

    def admit(self, who: Principal) -> None:
        keys = (("key", who.key_id), ("project", who.project_id), ("all", 0))
        with self._lock:
            for k, cap in zip(keys, self.caps, strict=True):
                if self._open[k] >= cap:
                    raise Busy(
                        f"too many {self.what} open at once ({cap} per {k[0]}): close some, or try again later", field=self.what
                    )
            for k in keys:
                self._open[k] += 1

    def release(self, who: Principal) -> None:
        with self._lock:
            for k in (("key", who.key_id), ("project", who.project_id), ("all", 0)):
                self._open[k] -= 1


status_streams = Limit("status streams", per_key=16, per_project=64, total=256)


def sse(event: str, html: str) -> str:
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in html.splitlines()) + "\n"


def status_block(ep: EndpointPublic) -> str:
    return templates.get_template("_endpoint_status.html").render(ep=ep)


@router.get("/endpoints/{ref}/status/stream")
async def status_stream(request: Request, ref: str, who: Who) -> StreamingResponse:
    r, signed_in = rt(request), session(request)
    await run_in_threadpool(r.endpoints.get, who, ref)  # a 404 before the stream starts
    status_streams.admit(who)
    release = Once(lambda: status_streams.release(who))

    async def events() -> AsyncIterator[str]:
        last, quiet = "", 0
        try:
            while not await request.is_disconnected():
                try:
                    await run_in_threadpool(still_valid, request, signed_in)
                    html = status_block(await run_in_threadpool(r.endpoints.get, who, ref))
                except (NotFound, SignInRequired):
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
            release()

    return HeldStream(events(), release, **SSE)


def while_signed_in(request: Request, signed_in: Session, response: StreamingResponse) -> StreamingResponse:
    """The response's stream, ended once its session is over (checked every RECHECK_S)."""
    inner = response.body_iterator

    async def guarded() -> AsyncIterator[str | bytes]:
        checked = time.monotonic()
        try:
            async for chunk in inner:
                if time.monotonic() - checked > RECHECK_S:
                    checked = time.monotonic()
                    try:
                        await run_in_threadpool(still_valid, request, signed_in)
                    except SignInRequired:
                        return
                yield chunk  # type: ignore[misc]
        finally:
            close = getattr(inner, "aclose", None)
            if close is not None:  # the follower's own clean-up (its slot) runs now, not at collection
                await close()

    response.body_iterator = guarded()
    return response
