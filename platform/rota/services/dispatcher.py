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
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from rota.domain.webhooks import SIGNATURE_HEADER, private_address, signature
from rota.services.async_queue import AsyncQueue, Claimed
from rota.services.deliveries import Hook

log = logging.getLogger(__name__)

WEBHOOK_DEADLINE_S = 15.0  # one delivery, whole
WEBHOOKS_AT_ONCE = 16
DNS_TIMEOUT_S = 5.0
HOUSEKEEPING_S = 2.0
MIN_GAP_S = 0.02  # between two looks, however often the dispatcher is nudged  # lapsed leases, expiry and finished batches are looked at this often
HOLD = frozenset({"PENDING", "FAILED", "STOPPING", "STOPPED", "TERMINATING", "TERMINATED"})  # no sends at all


class Dispatcher:
    def __init__(
        self,
        service: AsyncQueue,
        targets: Callable[[list[int]], dict[int, dict[str, Any]]],
        base_url: Callable[[], str],
        token: str,
        secrets: Callable[[int], list[str]],
        interval_s: float = 0.2,
        timeout_s: float = 600.0,
        allow_private: bool = False,
        clock: Callable[[], float] = time.time,
    ):
        """``targets``: endpoint id -> its ``status`` and ``async_limit`` (the routing table's);
        ``base_url``: where the gateway answers (it can change when Ray's port is known);
        ``secrets``: what a project's webhooks are signed with now."""
        self.service, self.targets, self.base_url, self.token, self.secrets = service, targets, base_url, token, secrets
        self.interval_s, self.timeout_s, self.allow_private, self.clock = interval_s, timeout_s, allow_private, clock
        self.inflight: dict[int, int] = defaultdict(int)
        self.sent = self.recorded = self.stale = 0
        self.last_error: str | None = None
        self._hooks_inflight: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._housekept = float("-inf")
        self._dns = ThreadPoolExecutor(4, thread_name_prefix="webhook-dns")  # slow names never hold the store's threads
        self.active: Callable[[], bool] = lambda: True  # this control plane leads

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
        self._hook_slots = asyncio.Semaphore(WEBHOOKS_AT_ONCE)
        hook_client = httpx.AsyncClient(timeout=httpx.Timeout(10.0), trust_env=False, follow_redirects=False)
        # Straight to the gateway, as the console's playground goes: never through an
        # HTTP(S)_PROXY from the environment, which would see the gateway's token.
        timeout = httpx.Timeout(self.timeout_s, connect=5.0)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as http, hook_client:
            self._http, self._hooks_http = http, hook_client
            tasks: set[asyncio.Task[None]] = set()
            while not self._stopping:
                try:
                    claims, due = await asyncio.to_thread(self.tick)
                    for c in claims:  # counted here, on the loop, where sends end
                        self.inflight[c.endpoint_id] += 1
                    for coro in [*map(self._send, claims), *map(self._deliver, due)]:
                        task = asyncio.create_task(coro)
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    self.last_error = None
                except Exception as e:  # the store is busy or away: the next tick tries again
                    self.last_error = f"{type(e).__name__}: {e}"
                    log.warning("async dispatcher: %s", self.last_error)
                await asyncio.sleep(MIN_GAP_S)  # a burst of submits nudges once per look, not once each
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval_s)
                self._wake.clear()
            for task in list(tasks):  # a send cut short here is sent again once its lease lapses
                task.cancel()

    # --- one look (on a worker thread: store calls block) ----------------------------

    def tick(self) -> tuple[list[Claimed], list[Hook]]:
        """Housekeeping, then what to send now and which webhooks to deliver (nothing where
        another control plane leads: one dispatcher keeps each endpoint's share of room)."""
        if not self.active():
            return [], []
        now = self.clock()
        svc = self.service
        if now - self._housekept >= HOUSEKEEPING_S:  # writes: not at every look
            svc.housekeeping(now)
            self._housekept = now
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
            r = await asyncio.wait_for(  # a whole deadline (httpx's timeout is per read), within the lease
                self._http.post(
                    self.base_url().rstrip("/") + c.route,
                    content=c.body,
                    headers={
                        "authorization": f"Bearer {self.token}",
                        "content-type": "application/json",
                        "x-rota-project": str(c.project_id),
                        "x-rota-priority": "background",
                        "x-request-id": c.id,
                    },
                ),
                self.timeout_s,
            )
            status, body = r.status_code, r.content
            self.sent += 1
        except Exception as e:  # no answer (a broken connection, a timeout): sent again, as an attempt
            error = f"{type(e).__name__}: {e}"[:500]
        finally:
            self.inflight[c.endpoint_id] -= 1
        for wait_s in (0.2, 1.0, 5.0, None):  # the store may be busy a moment: the answer is not dropped for that
            try:
                verdict = await asyncio.to_thread(self.service.record, c, status, body, error, self.clock())
                break
            except Exception as e:
                if wait_s is None:  # left running: sent again once its lease lapses
                    log.warning("async dispatcher: could not record %s: %s", c.id, e)
                    return
                await asyncio.sleep(wait_s)
        if verdict == "stale":
            self.stale += 1
        elif verdict == "done":
            self.recorded += 1
        self.nudge()  # room was freed

    async def _deliver(self, hook: Hook) -> None:
        async with self._hook_slots:  # a few at a time: slow receivers never hold sends back
            try:
                error = await asyncio.wait_for(self._post_hook(hook), WEBHOOK_DEADLINE_S)
            except asyncio.TimeoutError:
                error = f"no answer within {WEBHOOK_DEADLINE_S:g}s"
            except Exception as e:
                error = f"{type(e).__name__}: {e}"[:500]
        try:
            await asyncio.to_thread(self.service.hook_done, hook, error, self.clock())
        finally:
            self._hooks_inflight.discard(hook.id)

    async def _post_hook(self, hook: Hook) -> str | None:
        """POST the request's final state to its webhook: the name is resolved once, every
        address it gives is checked, and the connection goes to the address checked (the
        name stays in Host and in TLS), so a name that resolves differently the second time
        cannot reach a private address. No proxy from the environment, no redirects."""
        parts = urlsplit(hook.url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.run_in_executor(self._dns, socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM), DNS_TIMEOUT_S
            )
        except (OSError, asyncio.TimeoutError) as e:
            return f"cannot resolve {host}: {type(e).__name__}: {e}"
        addresses = [str(info[4][0]) for info in infos]
        if not self.allow_private and any(private_address(a) for a in addresses):
            return f"{host} is a private address (ROTA_WEBHOOK_ALLOW_PRIVATE=true allows it)"
        ip = addresses[0]
        target = urlunsplit((parts.scheme, f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}", parts.path or "/", parts.query, ""))
        payload = await asyncio.to_thread(self.service.hook_payload, hook.id)
        secrets = await asyncio.to_thread(self.secrets, hook.project_id)
        headers = {
            "host": parts.netloc.rsplit("@", 1)[-1],
            "content-type": "application/json",
            SIGNATURE_HEADER: signature(secrets, payload, int(self.clock())),
            "x-rota-async-id": hook.id,
        }
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        async with self._hooks_http.stream("POST", target, content=payload, headers=headers, extensions=extensions) as r:
            return None if 200 <= r.status_code < 300 else f"the webhook answered {r.status_code}"  # its body is not read
