"""Admission across gateway replicas: an endpoint's limit holds for all of them together
(a helper of ``gateway.py``).

Each endpoint admits at most ``limit`` requests at once (its replicas' capacity plus its
queue). The limit is cut into **slots**, leased from one ``Pool`` that every gateway
replica shares (a named Ray actor); a replica admits a request on a slot it holds, so the
hot path is a local count, and asks the pool only when it holds no free slot:

- ``Slots.enter`` takes a free local slot, else asks the pool for one (one call at a time
  per replica, at most ``CALL_TIMEOUT_S``); no slot: the caller gets a 429, and the pool
  is not asked again for that endpoint until the next sync.
- every ``sync_s`` a replica tells the pool what it keeps: the most it used since the last
  sync (or what it uses now), so idle slots go back and another replica can take them.
- a replica not heard from for ``ttl_s`` (it died) loses its slots; a replica that has not
  heard from the pool for half that stops using the slots it holds (the pool may have
  given them away).
- a new pool (the first, or one Ray restarted) answers ``WARMING`` for ``WARMUP_S``, time
  enough for every live replica to tell it what it holds; replicas find it when they
  start, so this mostly passes before the first request.
- a pool that does not answer, or is warming up: each replica admits up to the whole
  limit by itself (so N replicas admit at most N times the limit), logged, until the pool
  answers again.

While the pool answers, the slots held never add up to more than the limit (``Pool.peak``
records the most ever held, for tests); the price is that a replica may refuse while
another holds idle slots, for at most two sync periods.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("ray.serve")

SYNC_S = 0.5
TTL_S = 5.0
CALL_TIMEOUT_S = 0.5  # a pool slower than this counts as away
NAMESPACE = "rota"  # the pool actor's Ray namespace
WARMUP_S = 4 * SYNC_S  # a new pool answers WARMING this long
WARMING = -1  # the pool's answer while it cannot vouch for slots held: admit alone
VERSION = 1  # in the actor's name: a gateway of another protocol never talks to this pool


class Pool:
    """The slots of every endpoint and who holds them (plain logic: Ray runs it as an actor)."""

    def __init__(self, ttl_s: float = TTL_S, warmup_s: float = 0.0, clock: Callable[[], float] = time.monotonic):
        self.ttl_s, self.clock = ttl_s, clock
        self.ready_at = clock() + warmup_s
        self.held: dict[str, dict[str, int]] = {}  # replica -> endpoint -> slots
        self.seen: dict[str, float] = {}
        self.peak: dict[str, int] = {}  # endpoint -> most slots ever held at once
        self.asks: dict[str, int] = {}  # replica -> acquire calls (who took part)

    def acquire(self, replica: str, name: str, limit: int, want: int = 1) -> int:
        """Up to ``want`` more slots of ``name`` for ``replica``: as many as the limit leaves;
        ``WARMING`` while a new pool cannot yet vouch for what live replicas hold."""
        now = self.clock()
        self._expire(now)
        self.seen[replica] = now
        self.asks[replica] = self.asks.get(replica, 0) + 1
        if now < self.ready_at:
            return WARMING
        used = sum(h.get(name, 0) for h in self.held.values())
        grant = max(0, min(want, limit - used))
        if grant:
            mine = self.held.setdefault(replica, {})
            mine[name] = mine.get(name, 0) + grant
            self.peak[name] = max(self.peak.get(name, 0), used + grant)
        return grant

    def sync(self, replica: str, keep: dict[str, int]) -> None:
        """What ``replica`` holds now (the rest went back to the pool)."""
        now = self.clock()
        self.seen[replica] = now
        self.held[replica] = {k: v for k, v in keep.items() if v > 0}
        self._expire(now)

    def snapshot(self) -> dict[str, Any]:
        return {"held": self.held, "peak": self.peak, "asks": self.asks}

    def _expire(self, now: float) -> None:
        for replica in [r for r, t in self.seen.items() if now - t > self.ttl_s]:
            self.seen.pop(replica)
            self.held.pop(replica, None)


class PoolClient(Protocol):
    async def acquire(self, replica: str, name: str, limit: int, want: int) -> int: ...
    async def sync(self, replica: str, keep: dict[str, int]) -> None: ...


class Slots:
    """One gateway replica's side: the slots it holds and the requests in flight on them."""

    def __init__(self, pool: PoolClient, replica: str, sync_s: float = SYNC_S, ttl_s: float = TTL_S):
        self.pool, self.replica, self.sync_s, self.ttl_s = pool, replica, sync_s, ttl_s
        self.held: dict[str, int] = {}
        self.inflight: dict[str, int] = {}
        self.used: dict[str, int] = {}  # the most in flight since the last sync
        self.refused: dict[str, float] = {}  # the pool had no slot for it at this time
        self.alone = False  # the pool did not answer: the whole limit is this replica's
        self.heard = time.monotonic()  # the pool's last answer
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def enter(self, name: str, limit: int | None) -> bool:
        if not limit:
            self._take(name)
            return True
        if self.inflight.get(name, 0) < min(self.held.get(name, 0), limit) and self._lease_holds():
            self._take(name)
            return True
        if time.monotonic() - self.refused.get(name, float("-inf")) < self.sync_s:
            return False  # the pool just said no: not asked again before the next sync
        async with self._lock:  # one question to the pool at a time: what it is told stays true
            if self.inflight.get(name, 0) >= limit:
                return False
            if self.inflight.get(name, 0) < self.held.get(name, 0) and self._lease_holds():
                self._take(name)
                return True
            granted = await self._ask(name, limit)
            if not granted:
                self.refused[name] = time.monotonic()
                return False
            self.held[name] = self.held.get(name, 0) + granted
            self._take(name)
            return True

    def leave(self, name: str) -> None:
        self.inflight[name] -= 1

    def _take(self, name: str) -> None:
        n = self.inflight.get(name, 0) + 1
        self.inflight[name] = n
        self.used[name] = max(self.used.get(name, 0), n)

    def _lease_holds(self) -> bool:
        """Slots held are this replica's while the pool has heard from it within half its
        TTL (it forgets a replica after the TTL); past that only ``alone`` admits."""
        return self.alone or time.monotonic() - self.heard < self.ttl_s / 2

    def _answered(self) -> None:
        self.heard = time.monotonic()
        if self.alone:
            log.info("admission pool reachable again")
            self.alone = False

    def _unreachable(self, e: BaseException) -> None:
        if not self.alone:
            log.warning("admission pool unreachable (%s: %s): admitting up to each limit locally", type(e).__name__, e)
        self.alone = True

    async def _ask(self, name: str, limit: int) -> int:
        try:
            granted = await asyncio.wait_for(self.pool.acquire(self.replica, name, limit, 1), CALL_TIMEOUT_S)
        except Exception as e:  # the pool is away (or slow): this replica counts alone
            self._unreachable(e)
            return 1
        if granted == WARMING:  # a new pool: alone until it has heard what everyone holds
            if not self.alone:
                log.info("admission pool warming up: admitting up to each limit locally")
            self.alone = True
            return 1
        self._answered()
        return granted

    async def sync(self, release_all: bool = False) -> None:
        """Give back what was not used since the last sync (everything: ``release_all``);
        tell the pool what is kept."""
        async with self._lock:
            keep = {n: min(self.held.get(n, 0), max(self.inflight.get(n, 0), u)) for n, u in self.used.items()}
            keep.update({n: self.inflight.get(n, 0) for n in self.held if n not in keep})
            had, self.held = self.held, {} if release_all else {n: k for n, k in keep.items() if k > 0}
            self.used = {n: i for n, i in self.inflight.items() if i > 0}
            self.refused.clear()
            if not had and not self.held and not self.alone:
                self.heard = time.monotonic()  # nothing held: nothing the pool could forget
                return
            try:
                await asyncio.wait_for(self.pool.sync(self.replica, self.held), CALL_TIMEOUT_S)
            except Exception as e:
                self._unreachable(e)
                return
            self._answered()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_s)
            await self.sync()


class LocalPool:
    """A ``Pool`` in this process, called as the Ray actor is (one replica, or tests)."""

    def __init__(self, pool: Pool | None = None):
        self.inner = pool or Pool()

    async def acquire(self, replica: str, name: str, limit: int, want: int) -> int:
        return self.inner.acquire(replica, name, limit, want)

    async def sync(self, replica: str, keep: dict[str, int]) -> None:
        self.inner.sync(replica, keep)


class RayPool:
    """The pool as a named, detached Ray actor shared by the gateway's replicas (0 CPUs;
    restarted by Ray if its node dies). Looked up (or created) off the event loop at the
    replica's start, and again at most every ``TTL_S`` after a failure."""

    def __init__(self, name: str):
        self.name = name
        self._actor: Any = None
        self._looked_up = float("-inf")

    async def _handle(self) -> Any:
        if self._actor is None:
            if time.monotonic() - self._looked_up < TTL_S:
                raise ConnectionError(f"admission pool {self.name} not found a moment ago")
            self._looked_up = time.monotonic()
            self._actor = await asyncio.get_running_loop().run_in_executor(None, self._get_or_create)
        return self._actor

    def _get_or_create(self) -> Any:
        import ray

        actor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)(_PoolActor)
        return actor.options(name=self.name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True).remote()

    async def connect(self) -> None:
        """Find (or create) the pool now, so that it is warm before the first request."""
        try:
            await self._handle()
        except Exception as e:
            log.warning("admission pool %s: %s: %s", self.name, type(e).__name__, e)

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(await self._handle(), method).remote(*args)
        except ConnectionError:
            raise
        except Exception:
            self._actor = None  # looked up (or created) again, at most every TTL_S
            raise

    async def acquire(self, replica: str, name: str, limit: int, want: int) -> int:
        return int(await self._call("acquire", replica, name, limit, want))

    async def sync(self, replica: str, keep: dict[str, int]) -> None:
        await self._call("sync", replica, keep)


class _PoolActor(Pool):
    def __init__(self) -> None:
        # A new pool (first start, or after Ray restarted or someone killed it) knows
        # nothing of slots already held: it grants none until live replicas have synced.
        super().__init__(warmup_s=WARMUP_S)
