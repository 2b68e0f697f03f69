"""The dispatcher: sends queued async requests to their endpoints through the base URL, as
their room allows, and delivers webhooks. One asyncio loop on a thread of the control plane.

Each request goes through the gateway like any call (so it is in the request log under
its async id, wakes a sleeping endpoint, and is counted against the endpoint's limit),
with the gateway's token and ``x-rota-project``, marked ``background``: the gateway admits
it only while the endpoint's requests in flight are under its async limit (a share of its
limit), so synchronous calls keep room and queued work never causes them a 429. Queued
work of an endpoint that is down (stopped, failed) waits; ``run_in_window`` work waits
until the endpoint serves (a scheduled window opened).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from rota.domain.invocations import SIGNATURE_HEADER, private_address, signature
from rota.services.invocations import Claimed, Hook, InvocationService

log = logging.getLogger(__name__)

HOLD = frozenset({"PENDING", "FAILED", "STOPPING", "STOPPED", "TERMINATING", "TERMINATED"})  # no sends at all


class Dispatcher:
    def __init__(
        self,
        service: InvocationService,
        targets: Callable[[list[int]], dict[int, dict[str, Any]]],
        base_url: Callable[[], str],
        token: str,
        interval_s: float = 0.2,
        timeout_s: float = 600.0,
        allow_private: bool = False,
        clock: Callable[[], float] = time.time,
    ):
        """``targets``: endpoint id -> its ``status`` and ``async_limit`` (the routing table's);
        ``base_url``: where the gateway answers (it can change when Ray's port is known)."""
        self.service, self.targets, self.base_url, self.token = service, targets, base_url, token
        self.interval_s, self.timeout_s, self.allow_private, self.clock = interval_s, timeout_s, allow_private, clock
        self.inflight: dict[int, int] = defaultdict(int)
        self.sent = self.recorded = self.stale = 0
        self.last_error: str | None = None
        self._hooks_inflight: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="async-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self.nudge()
        if self._thread:
            self._thread.join(5)

    def nudge(self) -> None:
        """There is new work: look now, not at the next interval."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
        async with httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s, connect=5.0), limits=limits) as http:
            self._http = http
            tasks: set[asyncio.Task[None]] = set()
            while not self._stopping:
                try:
                    claims, hooks = await asyncio.to_thread(self.tick)
                    for c in claims:  # counted here, on the loop, where sends end
                        self.inflight[c.endpoint_id] += 1
                    for coro in [*map(self._send, claims), *map(self._deliver, hooks)]:
                        task = asyncio.create_task(coro)
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    self.last_error = None
                except Exception as e:  # the store is busy or away: the next tick tries again
                    self.last_error = f"{type(e).__name__}: {e}"
                    log.warning("async dispatcher: %s", self.last_error)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval_s)
                self._wake.clear()
            for task in list(tasks):  # a send cut short here is sent again once its lease lapses
                task.cancel()

    # --- one look (on a worker thread: store calls block) ----------------------------

    def tick(self) -> tuple[list[Claimed], list[Hook]]:
        """Housekeeping, then what to send now and which webhooks to deliver."""
        now = self.clock()
        svc = self.service
        svc.housekeeping(now)
        claims: list[Claimed] = []
        hooks: list[Hook] = []
        waiting = svc.waiting(now)
        if waiting:
            targets = self.targets(list(waiting))
            for ep_id in waiting:
                t = targets.get(ep_id)
                if t is None:
                    svc.abandon(ep_id, now)
                    continue
                if t["status"] in HOLD:
                    continue
                room = int(t["async_limit"]) - self.inflight[ep_id]
                claims += svc.claim(ep_id, room, now, in_window=t["status"] == "RUNNING")
        for hook in svc.hooks_due(now):
            if hook.id not in self._hooks_inflight:
                self._hooks_inflight.add(hook.id)
                hooks.append(hook)
        return claims, hooks

    # --- sends -----------------------------------------------------------------------

    async def _send(self, c: Claimed) -> None:
        status: int | None = None
        body: bytes | None = None
        error: str | None = None
        try:
            r = await self._http.post(
                self.base_url().rstrip("/") + c.route,
                content=c.body,
                headers={
                    "authorization": f"Bearer {self.token}",
                    "content-type": "application/json",
                    "x-rota-project": str(c.project_id),
                    "x-rota-priority": "background",
                    "x-request-id": c.id,
                },
            )
            status, body = r.status_code, r.content
            self.sent += 1
        except httpx.HTTPError as e:  # no answer: sent again (it counts as an attempt)
            error = f"{type(e).__name__}: {e}"[:500]
        finally:
            self.inflight[c.endpoint_id] -= 1
        verdict = await asyncio.to_thread(self.service.record, c, status, body, error, self.clock())
        if verdict == "stale":
            self.stale += 1
        elif verdict == "done":
            self.recorded += 1
        self.nudge()  # room was freed

    async def _deliver(self, hook: Hook) -> None:
        try:
            error = await self._post_hook(hook)
        except Exception as e:
            error = f"{type(e).__name__}: {e}"[:500]
        try:
            await asyncio.to_thread(self.service.hook_done, hook, error, self.clock())
        finally:
            self._hooks_inflight.discard(hook.id)

    async def _post_hook(self, hook: Hook) -> str | None:
        if not self.allow_private:
            refused = await asyncio.to_thread(_private_target, hook.url)
            if refused:
                return refused
        payload = await asyncio.to_thread(self.service.hook_payload, hook.id)
        secret = self.service.cipher.derive(f"webhook-secret/{hook.project_id}")
        r = await self._http.post(
            hook.url,
            content=payload,
            headers={
                "content-type": "application/json",
                SIGNATURE_HEADER: signature(secret, payload),
                "x-rota-async-id": hook.id,
            },
            timeout=10.0,
            follow_redirects=False,
        )
        return None if 200 <= r.status_code < 300 else f"the webhook answered {r.status_code}"


def _private_target(url: str) -> str | None:
    """Why ``url`` may not be called (its host is or resolves to a private address)."""
    parts = urlsplit(url)
    try:
        infos = socket.getaddrinfo(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
    except OSError as e:
        return f"cannot resolve {parts.hostname}: {e}"
    for info in infos:
        if private_address(str(info[4][0])):
            return f"{parts.hostname} is a private address (ROTA_WEBHOOK_ALLOW_PRIVATE=true allows it)"
    return None
