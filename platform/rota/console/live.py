"""The console's long-lived responses: live status over server-sent events (the status
block sent again each time what it shows changes; one look at the store a second serves
every stream of the process), the log tail, and the limits on how many of them a key, a
project and the process hold open. Each stops once its session is over (signed out, key
revoked: checked every few seconds)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from rota.api.streaming import SSE, HeldStream, Once
from rota.console.session import Session
from rota.console.web import SignInRequired, Who, rt, session, still_valid, templates
from rota.domain.endpoints import EndpointPublic
from rota.domain.errors import Busy
from rota.services.auth import Principal

log = logging.getLogger(__name__)
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


# A status stream costs a slot in the hub below, not a read of its own: the process holds many.
status_streams = Limit("status streams", per_key=16, per_project=64, total=1024)


class StatusHub:
    """Every status stream of this process served by one look at the store a second: the
    watched endpoints are read and their status blocks rendered once per look, in one
    query, and each stream is woken with its own. The look runs while anyone watches."""

    def __init__(self, every_s: float = EVERY_S) -> None:
        self.every_s = every_s
        self.watched: Counter[int] = Counter()
        self.latest: dict[int, str | None] = {}  # each endpoint's status block; None: gone
        self.looks = 0
        self._looked: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def follow(self, endpoint_id: int, read: Callable[[list[int]], dict[int, str]]) -> AsyncGenerator[str | None, None]:
        """The endpoint's status block after each look; None once it is gone; "" when no
        look came for a while (a failing store), so a stream still does its own checks."""
        self.watched[endpoint_id] += 1
        if self._looked is None:
            self._looked = asyncio.Event()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._look(read))
        try:
            while True:
                try:
                    await asyncio.wait_for(self._looked.wait(), 5 * self.every_s)
                except asyncio.TimeoutError:
                    yield ""
                    continue
                if endpoint_id in self.latest:  # not when it began watching during that look
                    yield self.latest[endpoint_id]
        finally:
            self.watched[endpoint_id] -= 1
            if not self.watched[endpoint_id]:
                del self.watched[endpoint_id]
                self.latest.pop(endpoint_id, None)

    async def _look(self, read: Callable[[list[int]], dict[int, str]]) -> None:
        try:
            while self.watched:
                ids = list(self.watched)
                try:
                    seen = await run_in_threadpool(read, ids)
                except Exception:  # a busy store: the streams wait for the next look
                    log.exception("status streams: reading the endpoints failed")
                else:
                    self.looks += 1
                    # Only those still watched: one whose last stream left during the read is gone from here.
                    self.latest.update({i: seen.get(i) for i in ids if i in self.watched})
                    looked, self._looked = self._looked, asyncio.Event()
                    assert looked is not None
                    looked.set()
                await asyncio.sleep(self.every_s)
        finally:
            self._task = None


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StatusHub] = weakref.WeakKeyDictionary()


def hub() -> StatusHub:
    """The hub of the running event loop (a server has one; tests start several)."""
    return _hubs.setdefault(asyncio.get_running_loop(), StatusHub())


def sse(event: str, html: str) -> str:
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in html.splitlines()) + "\n"


def status_block(ep: EndpointPublic) -> str:
    return templates.get_template("_endpoint_status.html").render(ep=ep)


@router.get("/endpoints/{ref}/status/stream")
async def status_stream(request: Request, ref: str, who: Who) -> StreamingResponse:
    r, signed_in = rt(request), session(request)
    ep = await run_in_threadpool(r.endpoints.get, who, ref)  # a 404 before the stream starts
    status_streams.admit(who)
    release = Once(lambda: status_streams.release(who))

    def blocks(ids: list[int]) -> dict[int, str]:  # what the hub reads each look: each block rendered once
        return {i: status_block(seen) for i, seen in r.endpoints.statuses(ids).items()}

    async def events() -> AsyncIterator[str]:
        last, quiet, checked = status_block(ep), 0, time.monotonic()
        yield sse("status", last)
        looks = hub().follow(ep.id, blocks)
        try:
            async for html in looks:
                if await request.is_disconnected():
                    return
                if time.monotonic() - checked > RECHECK_S:  # signed out, or the key revoked
                    checked = time.monotonic()
                    try:
                        await run_in_threadpool(still_valid, request, signed_in)
                    except SignInRequired:
                        html = None
                if html is None:
                    yield sse("gone", "")
                    return
                if html == "":  # no look for a while (a failing store): the connection kept alive
                    yield ": keep-alive\n\n"
                elif html != last:
                    last, quiet = html, 0
                    yield sse("status", html)
                else:
                    quiet += 1
                    if quiet % KEEPALIVE_S == 0:
                        yield ": keep-alive\n\n"
        finally:
            await looks.aclose()
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
