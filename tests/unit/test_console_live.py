"""The console's live status: one look at the store a second serves every open status
stream of the process, however many there are (the stream itself: test_console_browser)."""

import asyncio

from rota.console.live import StatusHub


def test_every_status_stream_is_served_by_one_read_per_look_and_learns_when_its_endpoint_is_gone():
    async def run():
        reads: list[list[int]] = []
        alive = {1: "one", 2: "two"}

        def read(ids):
            reads.append(sorted(ids))
            return {i: alive[i] for i in ids if i in alive}

        hub = StatusHub(every_s=0.01)
        streams = [hub.follow(1, read), hub.follow(1, read), hub.follow(2, read)]
        for _ in range(6):  # the three wait together: each look wakes all of them
            assert await asyncio.gather(*(anext(s) for s in streams)) == ["one", "one", "two"]
        assert len(reads) == hub.looks and reads[-1] == [1, 2]  # one read a look, for every stream
        assert hub.looks <= 7  # six rounds (and the first look, before all three watched), not one per stream

        alive.pop(2)
        assert await anext(streams[2]) in ("two", None)  # the look in flight may have read it still
        assert await anext(streams[2]) is None  # gone
        await streams[2].aclose()
        alive[1] = "one, changed"
        assert await anext(streams[0]) in ("one", "one, changed")
        assert await anext(streams[0]) == "one, changed"
        assert reads[-1] == [1]  # a closed stream's endpoint is no longer read

        for s in streams[:2]:
            await s.aclose()
        await asyncio.sleep(0.1)
        assert hub._task is None and not hub.watched  # nobody watches: no more looks
        looks = hub.looks
        await asyncio.sleep(0.05)
        assert hub.looks == looks

    asyncio.run(run())


def test_when_the_store_fails_streams_still_wake_to_do_their_own_checks_and_nothing_is_kept_for_a_stream_gone():
    async def run():
        state = {"fail": False}

        def read(ids):
            if state["fail"]:
                raise RuntimeError("database is locked")
            return {i: f"block {i}" for i in ids}

        hub = StatusHub(every_s=0.01)
        stream = hub.follow(1, read)
        assert await anext(stream) == "block 1"
        state["fail"] = True
        assert await anext(stream) == ""  # no look for 5 periods: woken with nothing new
        state["fail"] = False
        assert await anext(stream) in ("", "block 1")
        await stream.aclose()
        await asyncio.sleep(0.05)
        assert hub.latest == {} and not hub.watched

    asyncio.run(run())
