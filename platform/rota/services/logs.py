"""An endpoint's replica logs: the replicas' own output, merged, filtered, followed."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from rota.crypto import Cipher
from rota.domain.errors import Busy, RayUnavailable
from rota.domain.logs import LogLine, Source, merge, parse, redact, select
from rota.serve.logs import RayLogs, ReplicaActor
from rota.services.auth import Principal
from rota.services.endpoints import EndpointService
from rota.store.db import Database
from rota.store.tables import EndpointRow

log = logging.getLogger(__name__)
STREAMS = ("out", "err")
MAX_REPLICAS = 20  # the latest replicas read (the living first)
MAX_READ = 5000  # lines read from each file
# Each follower holds a stream per replica file on Ray's dashboard: so many at once in all,
# per key, and per project (a project can mint keys: it never takes every slot).
MAX_FOLLOWERS, MAX_FOLLOWERS_PER_KEY, MAX_FOLLOWERS_PER_PROJECT = 16, 4, 8


@dataclass(frozen=True)
class LogQuery:
    since: datetime | None = None
    search: str | None = None
    replica: str | None = None
    limit: int = 1000


@dataclass
class LogService:
    db: Database
    cipher: Cipher
    endpoints: EndpointService
    ray: RayLogs
    relist_s: float = 5.0  # while following: how often new replicas are looked for
    _followers: Counter[tuple[str, int]] = field(default_factory=Counter)  # ("key"|"project", id) -> logs followed now
    _lock: threading.Lock = field(default_factory=threading.Lock)
    settle_s: float = 1.0  # while following: how long the files' tails are gathered before they are sent
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))

    def target(self, who: Principal, ref: str) -> tuple[str, list[str]]:
        """The endpoint's application and the secrets its lines must not show."""
        with self.db.session() as s:
            ep: EndpointRow = self.endpoints.find(s, who, ref, live=False)
            secrets = [self.cipher.decrypt(ep.token), *(self.cipher.decrypt(v) for v in (ep.env or {}).values())]
            return ep.app_name, secrets

    def _replicas(self, app: str, q: LogQuery) -> list[ReplicaActor]:
        found = [r for r in self.ray.replicas(app) if q.replica is None or r.replica_id == q.replica]
        return found[:MAX_REPLICAS]

    def lines(self, who: Principal, ref: str, q: LogQuery) -> list[LogLine]:
        app, secrets = self.target(who, ref)
        year = self.clock().year
        files = []
        # Filtering reads deeper: the lines asked for may be further back than the last ``limit``.
        depth = MAX_READ if q.search or q.since else min(q.limit, MAX_READ)
        for r in self._replicas(app, q):
            for stream in STREAMS:
                source = Source(r.replica_id, stream)  # type: ignore[arg-type]
                try:
                    text = self.ray.read(r.actor_id, stream, depth)
                except RayUnavailable:  # e.g. not placed yet, or its node is gone: the others are still read
                    note = f"(rota: this replica's {stream} cannot be read now: not started yet, or its node is gone)"
                    files.append([LogLine(time=None, replica=r.replica_id, stream=source.stream, level="WARNING", line=note)])
                    continue
                files.append(parse(text, source, year))
        # Masked before the search: a search must not find (and so tell) what is masked.
        masked = [ln if (m := redact(ln.line, secrets)) is ln.line else ln.model_copy(update={"line": m}) for ln in merge(files)]
        return select(masked, q.since, q.search, q.limit)

    def admit(self, who: Principal) -> None:
        """A follower may start: Ray's dashboard serves a bounded number of calls at once,
        shared by everyone (429 beyond, as the base URL does)."""
        key, project = ("key", who.key_id), ("project", who.project_id)
        with self._lock:
            f = self._followers
            if self.following() >= MAX_FOLLOWERS or f[key] >= MAX_FOLLOWERS_PER_KEY or f[project] >= MAX_FOLLOWERS_PER_PROJECT:
                raise Busy("too many logs are followed at once; try again later, or read without follow", field="follow")
            f[key] += 1
            f[project] += 1

    def release(self, who: Principal) -> None:
        with self._lock:
            self._followers[("key", who.key_id)] -= 1
            self._followers[("project", who.project_id)] -= 1

    def following(self) -> int:
        """Logs followed now, by everyone."""
        return sum(n for (kind, _), n in self._followers.items() if kind == "key")

    async def follow(self, who: Principal, ref: str, q: LogQuery) -> AsyncIterator[LogLine | None]:
        """The last ``q.limit`` lines, merged, then new lines of every replica (and of
        replicas that start meanwhile) as they come; None after each second without one
        (a caller may send a keep-alive)."""
        app, secrets = await asyncio.to_thread(self.target, who, ref)
        queue: asyncio.Queue[LogLine] = asyncio.Queue(maxsize=10_000)
        tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        year = self.clock().year

        def wanted(ln: LogLine) -> bool:
            return (q.search is None or q.search in ln.line) and (q.since is None or (ln.time is not None and ln.time >= q.since))

        async def pump(r: ReplicaActor, stream: str, tail: int) -> None:
            source, pending, last = Source(r.replica_id, stream), "", None  # type: ignore[arg-type]
            try:
                async for text in self.ray.follow(r.actor_id, stream, tail):
                    whole, _, pending = (pending + text).rpartition("\n")
                    for ln in parse(whole, source, year) if whole else []:
                        last = ln.time or last
                        ln = ln.model_copy(update={"time": last, "line": redact(ln.line, secrets)})
                        if wanted(ln):
                            await queue.put(ln)
            except Exception as e:  # this file's stream ended (replica gone, Ray busy): the next look retries
                log.info("log stream of replica %s (%s) ended: %s", r.replica_id, stream, e)

        async def look(tail: int) -> None:
            for key in [k for k, t in tasks.items() if t.done()]:
                del tasks[key]  # picked up again below if the replica still lives
            try:
                found = await asyncio.to_thread(self._replicas, app, q)
            except RayUnavailable as e:
                log.info("looking for replicas to follow: %s", e)
                return
            for r in found:
                for stream in STREAMS:
                    if r.alive and (r.actor_id, stream) not in tasks:
                        tasks[(r.actor_id, stream)] = asyncio.create_task(pump(r, stream, tail))

        try:
            await look(min(q.limit, 5000))
            await asyncio.sleep(self.settle_s)  # each file's tail arrives first: merged, then sent
            first: list[LogLine] = []
            while not queue.empty():
                first.append(queue.get_nowait())
            by_file: dict[tuple[str, str], list[LogLine]] = {}
            for ln in first:
                by_file.setdefault((ln.replica, ln.stream), []).append(ln)
            for ln in select(merge(list(by_file.values())), None, None, q.limit):
                yield ln
            next_look = time.monotonic() + self.relist_s
            while True:
                if time.monotonic() >= next_look:
                    await look(1)  # a replica that started since: from its latest line
                    next_look = time.monotonic() + self.relist_s
                try:
                    yield await asyncio.wait_for(queue.get(), timeout=1.0)
                except asyncio.TimeoutError:
                    yield None
        finally:
            for t in tasks.values():
                t.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
