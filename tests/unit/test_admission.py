"""Admission shared by gateway replicas (serve_apps/_admission.py): an endpoint's limit
holds for all of them together. The pool runs here in-process (as the Ray actor runs it);
through the gateway, two replicas share one pool."""

import asyncio
import random

from _admission import LocalPool, Pool, Slots
from support.gateway import KEY_A, chat, running_gateway


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def replicas(n, pool=None):
    pool = pool or Pool()
    return pool, [Slots(LocalPool(pool), f"gw-{i}") for i in range(n)]


def test_replicas_together_never_admit_more_than_the_limit():
    async def run():
        rng = random.Random(7)
        pool, gws = replicas(3)
        limit, inside = 5, []
        for step in range(3000):
            gw = rng.choice(gws)
            if inside and rng.random() < 0.45:
                g = inside.pop(rng.randrange(len(inside)))
                g.leave("1/chat")
            elif await gw.enter("1/chat", limit):
                inside.append(gw)
            if step % 50 == 0:
                await rng.choice(gws).sync()
            assert len(inside) <= limit
            assert sum(g.inflight.get("1/chat", 0) for g in gws) == len(inside)
            assert sum(h.get("1/chat", 0) for h in pool.held.values()) <= limit
        return pool, gws

    pool, gws = asyncio.run(run())
    assert pool.peak["1/chat"] == 5  # the limit was reached, never passed
    assert all(pool.asks.get(g.replica) for g in gws)  # every replica took part


def test_idle_slots_go_back_and_another_replica_takes_them():
    async def run():
        pool, (a, b) = replicas(2)
        for _ in range(3):
            assert await a.enter("1/chat", 3)
        assert not await b.enter("1/chat", 3)  # a holds them all
        for _ in range(3):
            a.leave("1/chat")
        await a.sync()  # keeps what it used since the last sync
        assert not await b.enter("1/chat", 3)
        await a.sync()  # unused since: given back
        assert a.held == {} and await b.enter("1/chat", 3)
        return pool

    pool = asyncio.run(run())
    assert pool.held["gw-1"] == {"1/chat": 1}


def test_the_slots_of_a_replica_that_died_are_freed_after_the_ttl():
    async def run():
        clock = Clock()
        pool, (a, b) = replicas(2, Pool(ttl_s=5, clock=clock))
        assert await a.enter("1/chat", 1)
        assert not await b.enter("1/chat", 1)
        clock.t += 6  # a never synced again
        assert await b.enter("1/chat", 1)

    asyncio.run(run())


def test_a_restarted_pool_grants_nothing_until_replicas_have_told_it_what_they_hold():
    async def run():
        clock = Clock()
        pool = Pool(warmup_s=2, clock=clock)
        _, (a, b) = replicas(2, pool)
        a.held, a.inflight, a.used = {"1/chat": 2}, {"1/chat": 2}, {"1/chat": 2}  # before the restart
        assert not await b.enter("1/chat", 2)
        await a.sync()
        clock.t += 3
        assert not await b.enter("1/chat", 2)  # a's two are known now
        a.leave("1/chat")
        await a.sync()
        await a.sync()
        assert await b.enter("1/chat", 2)

    asyncio.run(run())


def test_an_unreachable_pool_leaves_each_replica_its_own_limit():
    class Down:
        async def acquire(self, *a):
            raise ConnectionError("pool gone")

        async def sync(self, *a):
            raise ConnectionError("pool gone")

    async def run():
        gw = Slots(Down(), "gw-0")
        admitted = [await gw.enter("1/chat", 2) for _ in range(4)]
        await gw.sync()
        return gw, admitted

    gw, admitted = asyncio.run(run())
    assert admitted == [True, True, False, False] and gw.alone


def test_a_lowered_limit_applies_to_slots_already_held():
    async def run():
        _, (a,) = replicas(1)
        assert await a.enter("1/chat", 3) and await a.enter("1/chat", 3)
        a.leave("1/chat")
        assert not await a.enter("1/chat", 1)  # one in flight, the limit is now one
        assert await a.enter("1/chat", None)  # no limit: counted, always admitted

    asyncio.run(run())


def test_two_gateway_replicas_share_an_endpoints_limit():
    pool = Pool()
    with running_gateway(pool=LocalPool(pool)) as one, running_gateway(pool=LocalPool(pool)) as two:
        one.app.admission.replica, two.app.admission.replica = "gw-1", "gw-2"
        one.app.admission.held.clear()
        two.app.admission.held.clear()
        pool.held.clear()
        limit = one.cp.endpoints[0]["max_concurrency"]
        assert all(one.portal.call(one.app.admission.enter, "1/chat", limit) for _ in range(limit))
        r = chat(two, KEY_A)
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
        one.app.admission.leave("1/chat")
        one.portal.call(one.app.admission.sync)
        one.portal.call(one.app.admission.sync)
        assert chat(two, KEY_A).status_code == 200
        assert pool.peak["1/chat"] == limit
