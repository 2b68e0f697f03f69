"""Several control planes on one PostgreSQL and the session's Ray cluster, one leading,
during a fire storm: the leader cut off from the store while it runs, then leaders
SIGKILLed again and again. Every fire is applied exactly once (runs and events), a standby
takes over within the lease, API calls spread over the live processes are all answered,
and no PUT of a deposed leader reaches Ray after one of its successor's: each process
reaches Ray's dashboard through a relay that writes down every PUT in the order Ray got
them, with the epoch it was sent under (tests/support/recorder.py). That checks what
the leaders send (the lease's margin, each PUT bounded by the time left on it); a network
that held a PUT longer than that is not simulated (Ray has no fencing of its own).

The storm's entries keep min_replicas at 0 and move max_replicas, so every fire changes the
applications (a PUT) and no replica starts. Which process fires is checked too (the store
alone would keep fires once even if every process fired): one never elected has fired
nothing, by its own /metrics. `make test` runs this small with a 4 s lease renewed every
second; `make chaos` with the defaults (15 s, renewed every 5 s) and 10 kills.
"""

from __future__ import annotations

import random
import re
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
from support.procs import RotaServer, free_port, wait_until
from support.recorder import History, Relay
from support.storm import all_events, daily_storm, not_applied_once


@pytest.fixture(scope="module")
def pg():
    p = Postgres().start()
    yield p
    p.stop()


class Fleet:
    """``rota server`` processes on one store, sharing their secret key and admin key as a
    deployment's secrets would; each keeps its port across restarts."""

    def __init__(self, tmp_path, urls: list[str], lease_s: float, renew_s: float, cluster):
        secret, admin = Fernet.generate_key().decode(), new_key()
        self.servers: list[RotaServer] = []
        self.history = History()
        self.relays: list[Relay] = []
        for i, url in enumerate(urls):
            home = tmp_path / f"cp{i}"
            write_secret(home / "admin_key", admin)
            self.relays.append(Relay(f"cp{i}", cluster.dashboard_url, self.history))
            env = {
                **cluster.server_env(),
                "ROTA_RAY_ADDRESS": self.relays[-1].url,  # Ray's dashboard, through a relay that records PUTs
                "ROTA_DATABASE_URL": url,
                "ROTA_SECRET_KEY": secret,
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

    def one_leader(self, timeout: float, but: RotaServer | None = None) -> RotaServer:
        """The leader, once exactly one live process says it leads (and it is not ``but``)."""
        found = wait_until(lambda: [s for s in self.leaders() if s is not but], timeout, interval=0.1, what="a leader")
        assert len(found) == 1, [s.url for s in found]
        return found[0]

    def kill_all(self) -> None:
        for s in self.servers:
            s.kill()
        for r in self.relays:
            r.close()


def test_a_leader_cut_off_from_the_store_then_leaders_sigkilled_during_a_fire_storm(pg, cluster, tmp_path, full):
    kills, lease = (10, (15.0, 5.0)) if full else (2, (4.0, 1.0))
    rng = random.Random(13)
    link = Link(pg.port)
    url = pg.database("storm")
    fleet = Fleet(tmp_path, [url.replace(f":{pg.port}/", f":{link.port}/"), url, url], *lease, cluster)
    first, *others = fleet.servers  # the first reaches the store through a link the test can cut
    try:
        fleet.start([first])  # it leads
        fleet.start(others)
        assert fleet.one_leader(10) is first
        window = 2 * lease[0] + 20 + kills * (lease[0] + 7)  # the cut, then the kills (each: the takeover, the restart)
        spacing = int(lease[0]) * 2 + 5  # longer than a takeover: no fire superseded by a later one
        # Created through every process: the standbys nudge the leader.
        due, end = daily_storm(
            fleet.call, 20 if full else 6, window, rng, lead_s=4, spacing_s=spacing, bounds=lambda k: (0, 1 + k % 2)
        )

        # 1. Cut off from the store while it runs: it stops acting before another takes over.
        wait_until(lambda: counters(first)["rota_fires_total"] > 0, 20, what="the leader's first fire")
        assert all(counters(s)["rota_fires_total"] == 0 for s in others)  # the standbys fire nothing
        link.cut()
        t0, stepped_down, took_over, new = time.monotonic(), None, None, None
        while took_over is None and time.monotonic() - t0 < lease[0] * 3 + 10:  # both watched in one loop
            if stepped_down is None and not _leading(first):
                stepped_down = time.monotonic() - t0
            if leading := [s for s in others if _leading(s)]:
                took_over, (new,) = time.monotonic() - t0, leading
            time.sleep(0.05)
        assert stepped_down is not None and took_over is not None, (stepped_down, took_over)
        assert stepped_down < took_over  # never two acting at once
        time.sleep(2)
        link.mend()
        wait_until(lambda: counters(first)["rota_leader_elections_total"] == 1 and not _leading(first), 10)
        fired_by_first = counters(first)["rota_fires_total"]
        time.sleep(lease[0])
        assert fleet.leaders() == [new]  # back on the store, as a standby
        assert counters(first)["rota_fires_total"] == fired_by_first and counters(new)["rota_fires_total"] > 0

        # 2. The leader SIGKILLed again and again, while clients call any live process.
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
            leader = fleet.one_leader(lease[0] * 2)
            never_led = [s for s in fleet.live() if counters(s)["rota_leader_elections_total"] == 0]
            assert all(counters(s)["rota_fires_total"] == 0 for s in never_led)  # only a leader fires
            t0 = time.monotonic()
            leader.kill()
            fleet.one_leader(lease[0] * 3 + 10, but=leader)
            takeovers.append(time.monotonic() - t0)
            fleet.start([leader])  # back, as a standby
        time.sleep(max(0.0, (end - datetime.now(timezone.utc)).total_seconds()) + 4)  # the last fires, then a sweep
        stop.set()
        load.join()

        events = all_events(lambda path, **kw: fleet.call("GET", path, **kw))
        fleet.kill_all()  # no PUT after the history is read
        assert not_applied_once(due, events, url) == {"events": [], "runs": [], "skipped": []}
        assert not failed and answered[0] > 0, failed[:3]
        # Ray's side: no PUT of a deposed leader after its successor's first; every leader PUT.
        puts = fleet.history.puts
        assert fleet.history.late() == [], fleet.history.late()[:3]
        assert len({p.epoch for p in puts}) >= kills + 2, [
            (p.who, p.epoch) for p in puts
        ]  # the first, after the cut, after each kill
        assert all(p.who == p.relay and p.status == 200 for p in puts)  # each through its own relay, answered
        ordered = sorted(takeovers)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        assert p99 <= 20.0, takeovers
        print(
            f"cut off: stepped down after {stepped_down:.1f}s, another led after {took_over:.1f}s; "
            f"{kills} leaders SIGKILLed (lease {lease[0]:g}s): takeover p50 {ordered[len(ordered) // 2]:.1f}s, "
            f"p99 {p99:.1f}s; {len(due)} fires due, all applied once; {answered[0]} API calls answered, 0 failed; "
            f"{len(puts)} PUTs to Ray under {len({p.epoch for p in puts})} epochs, none after a newer epoch's"
        )
    finally:
        fleet.kill_all()
        link.close()


def _leading(s: RotaServer) -> bool:
    return bool(httpx.get(s.url + "/healthz", timeout=5).json()["leader"]["leading"])


def counters(s: RotaServer) -> dict[str, float]:
    """This process's own fires (every trigger) and elections, from its /metrics."""
    text = httpx.get(s.url + "/metrics", headers={"Authorization": s.api.headers["Authorization"]}, timeout=10).text
    out = {"rota_fires_total": 0.0, "rota_leader_elections_total": 0.0}
    for name, value in re.findall(r"^(rota_fires_total|rota_leader_elections_total)(?:\{[^}]*\})? (\S+)$", text, re.M):
        out[name] += float(value)
    return out
