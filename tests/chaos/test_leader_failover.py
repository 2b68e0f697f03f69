"""Several control planes on one PostgreSQL, one leading: the leader SIGKILLed again and
again during a fire storm, or cut off from the store while it runs. Every fire is applied
exactly once (runs and events), a standby takes over within the lease, and API calls
spread over the live processes are all answered.

No Ray cluster (as in test_crash_storm): fires never call Ray; the reconciler's fencing
against a deposed leader's PUTs is tested with the in-memory Ray (tests/unit/test_leadership.py).
`make test` runs this small with a 3 s lease; `make chaos` with the defaults (15 s, renewed
every 5 s) and 10 kills.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timezone

import httpx
import pytest
from cryptography.fernet import Fernet

from rota.crypto import write_secret
from rota.services.auth import new_key
from support.link import Link
from support.postgres import Postgres
from support.procs import TEST_APPS, RotaServer, free_port, wait_until
from support.storm import all_events, daily_storm, not_applied_once


@pytest.fixture(scope="module")
def pg():
    p = Postgres().start()
    yield p
    p.stop()


class Fleet:
    """``rota server`` processes on one store, sharing their secret key and admin key as a
    deployment's secrets would; each keeps its port across restarts."""

    def __init__(self, tmp_path, urls: list[str], lease_s: float, renew_s: float):
        secret, admin = Fernet.generate_key().decode(), new_key()
        self.servers: list[RotaServer] = []
        for i, url in enumerate(urls):
            home = tmp_path / f"cp{i}"
            write_secret(home / "admin_key", admin)
            env = {
                "ROTA_DATABASE_URL": url,
                "ROTA_SECRET_KEY": secret,
                "ROTA_RAY_ADDRESS": f"http://127.0.0.1:{free_port()}",
                "ROTA_SERVE_APPS_PATH": str(TEST_APPS),
                "ROTA_SWEEP_INTERVAL_S": "2",
                "ROTA_LEADER_LEASE_S": str(lease_s),
                "ROTA_LEADER_RENEW_S": str(renew_s),
                "ROTA_INSTANCE_ID": f"cp{i}",
                "ROTA_PORT": str(free_port()),
            }
            self.servers.append(RotaServer(home, env))
        self._next = 0

    def start(self, servers: list[RotaServer] | None = None) -> None:
        threads = [threading.Thread(target=s.start) for s in servers or self.servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(s.proc and s.proc.poll() is None for s in servers or self.servers)

    def live(self) -> list[RotaServer]:
        return [s for s in self.servers if s.proc and s.proc.poll() is None]

    def call(self, method: str, path: str, **kw):
        """As a client behind a load balancer: the next live process, and on a refused
        connection the one after it."""
        for _ in range(len(self.servers)):
            s = self.servers[self._next % len(self.servers)]
            self._next += 1
            try:
                r = s.api.request(method, path, **kw)
            except httpx.TransportError:
                continue
            assert r.status_code < 300, (s.url, r.status_code, r.text)
            return r.json() if r.content else None
        raise AssertionError(f"no control plane answered {method} {path}")

    def leaders(self) -> list[RotaServer]:
        out = []
        for s in self.live():
            try:
                if httpx.get(s.url + "/healthz", timeout=2).json()["leader"]["leading"]:
                    out.append(s)
            except httpx.HTTPError:
                pass
        return out

    def kill_all(self) -> None:
        for s in self.servers:
            s.kill()


def test_the_leader_sigkilled_again_and_again_during_a_fire_storm(pg, tmp_path, full):
    kills, lease = (10, (15.0, 5.0)) if full else (3, (3.0, 1.0))
    rng = random.Random(13)
    url = pg.database("storm")
    fleet = Fleet(tmp_path, [url] * 3, *lease)
    try:
        fleet.start()
        wait_until(lambda: len(fleet.leaders()) == 1, 30, what="one leader")
        window = kills * (lease[0] + 7) + 8  # a kill, the takeover, the restart
        due, end = daily_storm(fleet.call, 20 if full else 6, window, rng)  # through every process: the standbys nudge

        answered, failed, stop = [0], [], threading.Event()

        def clients() -> None:
            while not stop.is_set():
                try:
                    fleet.call("GET", "/tasks", params={"limit": 20})
                    answered[0] += 1
                except AssertionError as e:
                    failed.append(str(e))
                time.sleep(0.05)

        load = threading.Thread(target=clients)
        load.start()
        takeovers = []
        for _ in range(kills):
            time.sleep(rng.uniform(1.0, 3.0))
            (leader,) = fleet.leaders()
            t0 = time.monotonic()
            leader.kill()
            new = wait_until(fleet.leaders, lease[0] * 3 + 10, interval=0.1, what="a new leader")
            takeovers.append(time.monotonic() - t0)
            assert new[0] is not leader
            fleet.start([leader])  # back, as a standby
        time.sleep(max(0.0, (end - datetime.now(timezone.utc)).total_seconds()) + 4)  # the last fires, then a sweep
        stop.set()
        load.join()

        events = all_events(lambda path, **kw: fleet.call("GET", path, **kw))
        assert not_applied_once(due, events, url) == {"events": [], "runs": [], "skipped": []}
        assert not failed and answered[0] > 0, failed[:3]
        ordered = sorted(takeovers)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        assert p99 <= 20.0, takeovers
        print(
            f"{kills} leaders SIGKILLed (lease {lease[0]:g}s), {len(due)} fires due, all applied once; "
            f"takeover p50 {ordered[len(ordered) // 2]:.1f}s p99 {p99:.1f}s; {answered[0]} API calls answered, 0 failed"
        )
    finally:
        fleet.kill_all()


def test_a_leader_cut_off_from_the_store_steps_down_and_another_takes_over(pg, tmp_path):
    lease = (3.0, 1.0)
    link = Link(pg.port)
    url = pg.database("cut")
    fleet = Fleet(tmp_path, [url.replace(f":{pg.port}/", f":{link.port}/"), url, url], *lease)
    first, *others = fleet.servers
    try:
        fleet.start([first])  # it leads
        fleet.start(others)
        assert fleet.leaders() == [first]
        due, end = daily_storm(fleet.call, 4, 20, random.Random(5), lead_s=4)

        time.sleep(6)
        link.cut()
        t0 = time.monotonic()
        wait_until(lambda: not _leading(first), lease[0] + 2, interval=0.1, what="the cut-off leader stepping down")
        stepped_down = time.monotonic() - t0
        new = wait_until(lambda: [s for s in fleet.leaders() if s is not first], lease[0] * 3 + 10, interval=0.1)
        took_over = time.monotonic() - t0
        assert stepped_down < took_over  # never two acting at once
        time.sleep(3)
        link.mend()
        time.sleep(lease[0] + 1)
        assert fleet.leaders() == new and not _leading(first)  # back on the store, as a standby

        time.sleep(max(0.0, (end - datetime.now(timezone.utc)).total_seconds()) + 4)
        events = all_events(lambda path, **kw: fleet.call("GET", path, **kw))
        assert not_applied_once(due, events, url) == {"events": [], "runs": [], "skipped": []}
        print(f"cut off: stepped down after {stepped_down:.1f}s, another led after {took_over:.1f}s; {len(due)} fires once")
    finally:
        fleet.kill_all()
        link.close()


def _leading(s: RotaServer) -> bool:
    return bool(httpx.get(s.url + "/healthz", timeout=5).json()["leader"]["leading"])
