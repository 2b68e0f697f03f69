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


class SlowPool(LocalPool):
    """The pool as Ray calls it: arguments copied when sent, answered after a random pause."""

    def __init__(self, pool, rng):
        super().__init__(pool)
        self.rng = rng

    async def acquire(self, *a):
        await asyncio.sleep(self.rng.random() / 1000)
        return await super().acquire(*a)

    async def sync(self, replica, keep):
        keep = dict(keep)
        await asyncio.sleep(self.rng.random() / 1000)
        return await super().sync(replica, keep)


def test_concurrent_calls_of_replicas_never_admit_more_than_the_limit_together():
    async def run():
        rng = random.Random(11)
        pool = Pool()
        gws = [Slots(SlowPool(pool, rng), f"gw-{i}", sync_s=0.002) for i in range(3)]
        limit, inside, most = 4, [0], [0]

        def pool_knows_every_admission():
            # What makes the limit hold: the pool counts at least what each replica has in flight.
            for g in gws:
                assert pool.held.get(g.replica, {}).get("1/chat", 0) >= g.inflight.get("1/chat", 0), g.replica

        async def call(gw):
            await asyncio.sleep(rng.random() / 10)  # arrivals spread over 100 ms, across syncs
            if await gw.enter("1/chat", limit):
                pool_knows_every_admission()
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                await asyncio.sleep(rng.random() / 200)
                inside[0] -= 1
                gw.leave("1/chat")

        async def syncing(gw):
            for _ in range(60):
                await asyncio.sleep(0.002)
                await gw.sync()
                pool_knows_every_admission()

        await asyncio.gather(*(call(rng.choice(gws)) for _ in range(600)), *(syncing(g) for g in gws))
        return pool, most[0]

    pool, most = asyncio.run(run())
    assert most <= 4 and pool.peak["1/chat"] <= 4
    assert most >= 2  # they did overlap


def test_a_slot_granted_while_a_sync_is_on_its_way_is_not_lost_from_the_pools_count():
    class SlowSync(LocalPool):
        async def sync(self, replica, keep):
            keep = dict(keep)  # as Ray sends it: a copy, taken at the call
            await asyncio.sleep(0.05)
            await super().sync(replica, keep)

    async def run():
        pool = Pool()
        a = Slots(SlowSync(pool), "gw-0")
        assert await a.enter("1/chat", 5)
        a.leave("1/chat")
        syncing = asyncio.ensure_future(a.sync())  # tells the pool "1", slowly
        await asyncio.sleep(0)
        assert await a.enter("1/chat", 5) and await a.enter("1/chat", 5)  # the second needs a new slot
        await syncing
        return pool.held["gw-0"]["1/chat"], a.inflight["1/chat"]

    counted, inflight = asyncio.run(run())
    assert counted >= inflight == 2


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
        await b.sync()  # (b asks again after its own next sync)
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
        await b.sync()
        assert await b.enter("1/chat", 1)

    asyncio.run(run())


def test_a_new_pool_lets_replicas_admit_alone_until_they_have_told_it_what_they_hold():
    async def run():
        clock = Clock()
        pool = Pool(warmup_s=2, clock=clock)
        _, (a, b) = replicas(2, pool)
        a.held, a.inflight, a.used = {"1/chat": 2}, {"1/chat": 2}, {"1/chat": 2}  # before the restart
        assert await b.enter("1/chat", 2) and b.alone  # the pool cannot vouch yet: b counts alone
        assert await b.enter("1/chat", 2) and not await b.enter("1/chat", 2)  # up to the limit, not past it
        b.leave("1/chat")
        b.leave("1/chat")
        await a.sync()
        clock.t += 3
        await b.sync()
        await b.sync()
        assert not b.alone and pool.held["gw-0"] == {"1/chat": 2}
        assert not await b.enter("1/chat", 2)  # a's two are known now
        a.leave("1/chat")
        await a.sync()
        await a.sync()
        await b.sync()
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


def test_a_replica_the_pool_may_have_forgotten_stops_using_its_slots(monkeypatch):
    async def run():
        pool, (a, b) = replicas(2)
        assert await a.enter("1/chat", 2)
        a.leave("1/chat")
        a.heard -= a.ttl_s  # no answer from the pool for a while: it may have given them away
        pool.held.pop("gw-0")
        assert await b.enter("1/chat", 2) and await b.enter("1/chat", 2)
        assert not await a.enter("1/chat", 2)  # asks the pool, which has none left
        return pool

    pool = asyncio.run(run())
    assert pool.peak["1/chat"] == 2


def test_a_refusal_is_remembered_until_the_next_sync_and_a_slow_pool_counts_as_away():
    class Counting(LocalPool):
        calls = 0

        async def acquire(self, *a):
            self.calls += 1
            return await super().acquire(*a)

    class Hanging(LocalPool):
        async def acquire(self, *a):
            await asyncio.sleep(30)

    async def run():
        pool = Pool()
        pool.held["other"] = {"1/chat": 1}
        pool.seen["other"] = pool.clock()
        gw = Slots(Counting(pool), "gw-0")
        assert not await gw.enter("1/chat", 1) and not await gw.enter("1/chat", 1)
        asked = gw.pool.calls
        await gw.sync()
        assert not await gw.enter("1/chat", 1)
        slow = Slots(Hanging(), "gw-1")
        t0 = asyncio.get_running_loop().time()
        admitted = await slow.enter("1/chat", 1)
        return asked, gw.pool.calls, admitted, asyncio.get_running_loop().time() - t0, slow.alone

    asked, calls, admitted, took, alone = asyncio.run(run())
    assert (asked, calls) == (1, 2)  # the second refusal did not ask; after the sync it asks again
    assert admitted and alone and took < 2


def test_a_replica_going_away_gives_its_slots_back():
    async def run():
        pool, (a, b) = replicas(2)
        assert await a.enter("1/chat", 1)
        a.leave("1/chat")
        await a.sync(release_all=True)
        return pool, await b.enter("1/chat", 1)

    pool, admitted = asyncio.run(run())
    assert admitted and pool.held["gw-0"] == {}


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
        two.portal.call(two.app.admission.sync)
        assert chat(two, KEY_A).status_code == 200
        assert pool.peak["1/chat"] == limit
