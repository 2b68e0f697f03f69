"""Admission across gateway replicas: an endpoint's limit holds for all of them together
(a helper of ``gateway.py``).

Each endpoint admits at most ``limit`` requests at once (its replicas' capacity plus its
queue). The limit is cut into **slots**, leased from one ``Pool`` that every gateway
replica shares (a named Ray actor); a replica admits a request on a slot it holds, so the
hot path is a local count, and asks the pool only when it holds no free slot:

- ``Slots.enter`` takes a free local slot, else asks the pool for one (one call at a time
  per replica); no slot: the caller gets a 429.
- every ``sync_s`` a replica tells the pool what it keeps: the most it used since the last
  sync (or what it uses now), so idle slots go back and another replica can take them.
- a replica not heard from for ``ttl_s`` (it died) loses its slots.
- a pool that Ray restarted knows nothing: it grants nothing for ``warmup_s`` (four sync
  periods), time enough for every live replica to tell it what it holds.
- a pool that cannot be reached: each replica admits up to the whole limit by itself
  (so N replicas admit at most N times the limit), logged, until the pool answers again.

The sum of slots held never exceeds the limit (``Pool.peak`` records the most ever held,
for tests); the price is that a replica may refuse while another one holds idle slots,
for at most ``sync_s``.
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
NAMESPACE = "rota"  # the pool actor's Ray namespace; its name is rota-admission-<gateway application>


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
        """Up to ``want`` more slots of ``name`` for ``replica``: as many as the limit leaves."""
        now = self.clock()
        self._expire(now)
        self.seen[replica] = now
        self.asks[replica] = self.asks.get(replica, 0) + 1
        if now < self.ready_at:
            return 0
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

    def __init__(self, pool: PoolClient, replica: str, sync_s: float = SYNC_S):
        self.pool, self.replica, self.sync_s = pool, replica, sync_s
        self.held: dict[str, int] = {}
        self.inflight: dict[str, int] = {}
        self.used: dict[str, int] = {}  # the most in flight since the last sync
        self.alone = False  # the pool did not answer: the whole limit is this replica's
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def enter(self, name: str, limit: int | None) -> bool:
        if not limit:
            self._take(name)
            return True
        if self.inflight.get(name, 0) < min(self.held.get(name, 0), limit):
            self._take(name)
            return True
        async with self._lock:  # one question to the pool at a time: what it is told stays true
            if self.inflight.get(name, 0) >= limit:
                return False
            if self.inflight.get(name, 0) < self.held.get(name, 0):
                self._take(name)
                return True
            granted = await self._ask(name, limit)
            if not granted:
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

    async def _ask(self, name: str, limit: int) -> int:
        try:
            granted = await self.pool.acquire(self.replica, name, limit, 1)
        except Exception as e:  # the pool is away: this replica counts alone
            if not self.alone:
                log.warning("admission pool unreachable (%s: %s): admitting up to each limit locally", type(e).__name__, e)
            self.alone = True
            return 1
        if self.alone:
            log.info("admission pool reachable again")
            self.alone = False
        return granted

    async def sync(self) -> None:
        """Give back what was not used since the last sync; tell the pool what is kept."""
        async with self._lock:
            keep = {n: min(self.held.get(n, 0), max(self.inflight.get(n, 0), u)) for n, u in self.used.items()}
            keep.update({n: self.inflight.get(n, 0) for n in self.held if n not in keep})
            had, self.held = self.held, {n: k for n, k in keep.items() if k > 0}
            self.used = {n: i for n, i in self.inflight.items() if i > 0}
            if not had and not self.held and not self.alone:
                return  # held nothing and holds nothing: the pool knows, no call
            try:
                await self.pool.sync(self.replica, self.held)
                self.alone = False
            except Exception as e:
                log.warning("admission pool sync failed: %s: %s", type(e).__name__, e)

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
    restarted by Ray if its node dies, then it waits ``warmup_s`` before granting)."""

    def __init__(self, name: str):
        self.name = name
        self._actor: Any = None

    def _handle(self) -> Any:
        if self._actor is None:
            import ray

            actor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)(_PoolActor)
            self._actor = actor.options(name=self.name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True).remote()
        return self._actor

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self._handle(), method).remote(*args)
        except Exception:
            self._actor = None  # looked up (or created) again next time
            raise

    async def acquire(self, replica: str, name: str, limit: int, want: int) -> int:
        return int(await self._call("acquire", replica, name, limit, want))

    async def sync(self, replica: str, keep: dict[str, int]) -> None:
        await self._call("sync", replica, keep)


class _PoolActor(Pool):
    def __init__(self) -> None:
        import ray

        restarted = ray.get_runtime_context().was_current_actor_reconstructed
        super().__init__(warmup_s=4 * SYNC_S if restarted else 0.0)
