"""Converge Ray Serve to the desired applications of all endpoints, forever.

Each tick: load one snapshot of the endpoints (database) -> build every spec once -> observe (Ray) -> decide (pure) ->
apply (PUT the whole declarative config: Rota's applications, and unchanged every one it did not deploy, unless the
cluster is Rota's alone) -> record what was observed and PUT (statuses, events, readiness), meter the replicas that
ran (usage). Ticks run every ``interval`` s and when nudged (a fire, an edit); Ray down is an observation, not an error.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from rota.crypto import Cipher
from rota.domain.errors import RayRejected, RayTimedOut, RayUnavailable
from rota.domain.leadership import Solo
from rota.domain.reconcile import Observation, ObservedApp, config_matches, decide, marked, refused, screen, why_refused
from rota.domain.specs import AppSpec, EndpointState, endpoint_spec
from rota.reconciler.applied import record_applied, record_observed
from rota.reconciler.sharing import Sharing
from rota.reconciler.snapshot import snapshot
from rota.reconciler.standby import Standby
from rota.serve.client import RayServe
from rota.services import readiness
from rota.services.leadership import Deposed
from rota.store.db import Database
from rota.store.tables import EndpointRow, utcnow

log = logging.getLogger(__name__)

MIN_PUT_S = 0.5  # a PUT needs at least this long left on the lease to be sent


class Reconciler:
    def __init__(
        self,
        db: Database,
        ray: RayServe,
        cipher: Cipher,
        interval: float = 2.0,
        clock: Callable[[], datetime] = utcnow,
        gateway: AppSpec | None = None,
        report_url: str | None = None,
        owner: str | None = None,
        own_cluster: bool = True,
    ):
        """``gateway``: the OpenAI base URL application, always deployed when given;
        ``report_url``: where starting replicas report their phase; ``owner``: the mark
        set on every application this Rota deploys; ``own_cluster``: every other
        application on the cluster is removed (else each is left as it is)."""
        self.db, self.ray, self.cipher, self.clock = db, ray, cipher, clock
        self.gateway, self.report_url, self.interval, self.owner = gateway, report_url, interval, owner
        self.sharing = Sharing(owner, own_cluster)
        self._nudge, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks, self.puts = 0, 0  # ticks run; declarative PUTs sent (metrics)
        self.metered: Callable[[list[EndpointState], Observation], None] = lambda states, seen: None  # usage, monitoring
        # Several control planes: a tick acts only under the epoch it began with (checked
        # before each PUT), and what it records is fenced by it in the same transaction.
        self.leadership: Any = Solo()
        self.last_tick_s: float | None = None
        self.last_error: str | None = None  # the last tick's failure, if it failed
        self.ray_reachable: bool | None = None
        self.standby = Standby(ray, self.sharing, lambda: self.sharing.known(db, gateway))
        self.ray_error: str | None = None  # Ray's own words: operators only (they may name any application)
        self.gateway_error: str | None = None  # why the base URL's application cannot be deployed, if so

    # ------------------------------------------------------------ loop
    def start(self) -> None:
        """A loop of its own (stop flag included): one left over from before a ``stop``
        that outlived its join ends with its own flag; its tick's epoch is not the new one,
        so it neither PUTs nor records."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._stop,), name="reconciler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._nudge.set()
        if self._thread:
            self._thread.join(timeout=15)

    def nudge(self) -> None:
        self._nudge.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                self.tick()
                failures, self.last_error = 0, None
            except Deposed as e:  # another control plane leads: this loop is being stopped
                log.warning("not recording this tick: %s", e)
            except Exception as e:  # a bug or the database: log, back off, keep going
                failures += 1
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("reconcile tick failed (%d in a row)", failures)
            self.last_tick_s = time.monotonic() - t0
            delay = self.interval if failures == 0 else min(30.0, self.interval * 2**failures)
            self._nudge.wait(delay * random.uniform(0.9, 1.1))  # jitter: instances never tick in lockstep
            self._nudge.clear()

    # ------------------------------------------------------------ one tick

    def load(self) -> tuple[list[EndpointState], set[str]]:
        return snapshot(self.db, self.cipher)

    @property
    def held(self) -> dict[str, ObservedApp]:  # not Rota's, as the last tick (or look) saw them
        return self.sharing.held

    def held_now(self) -> dict[str, ObservedApp]:
        """Not Rota's: as the last tick saw them; on a standby (no ticks), asked of Ray."""
        if self.leadership.epoch is not None or not self.sharing.active:
            return self.held
        self.standby.look()
        return self.standby.held

    def ray_view(self) -> tuple[bool | None, str | None]:
        """Ray reachable, and its error: as the last tick saw it; on a standby, asked of Ray."""
        if self.leadership.epoch is not None:
            return self.ray_reachable, self.ray_error
        self.standby.look()
        return self.standby.reachable, self.standby.error

    def not_rotas(self, observation: Observation) -> dict[str, ObservedApp]:
        return self.sharing.not_rotas(observation, self.sharing.known(self.db, self.gateway))

    def tick(self) -> None:
        epoch = self.leadership.epoch
        if epoch is None:  # another control plane leads
            return
        states, unreadable = self.load()
        observation = self.ray.observe()
        known = self.sharing.known(self.db, self.gateway) if self.sharing.active else {}
        trusted = self.sharing.observe(observation, known)
        specs = {st.id: self._marked(endpoint_spec(st, self.report_url), observation) for st in states}
        if self.held and self.sharing.move_unapplied(self.db, states, specs):
            states, unreadable = self.load()
            specs = {st.id: self._marked(endpoint_spec(st, self.report_url), observation) for st in states}
        wanted = [sp for sp in (self._marked(self.gateway, observation), *specs.values()) if sp is not None]
        ok, rejected = screen(wanted, self.held)
        keep = set(rejected) | unreadable | set(self.held)
        decision = decide(ok, self._own(observation), keep=frozenset(keep))
        put: set[str] = set()
        self.ray_error = observation.error
        if decision.put and observation.reachable and trusted and self.sharing.may_put():
            log.info("applying %d application(s): %s", len(ok), "; ".join(decision.reasons))
            put, observation = self._apply(epoch, ok, observation, rejected, keep, known)
        self.ray_reachable = observation.reachable
        if (why := rejected.get(self.gateway.name) if self.gateway else None) and why != self.gateway_error:
            log.warning("the base URL cannot be deployed: %s", why)
        self.gateway_error = why
        self._record(epoch, states, specs, rejected, put, decision.missing, self._own(observation))
        if observation.reachable:
            self.metered(states, observation)
        self.ticks += 1

    def _marked(self, spec: AppSpec | None, observation: Observation) -> AppSpec | None:
        return None if spec is None else marked(spec, self.owner, observation.apps.get(spec.name))

    def _own(self, observation: Observation) -> Observation:  # without the applications that are not Rota's
        return replace(observation, apps={n: a for n, a in observation.apps.items() if n not in self.held})

    def _apply(
        self,
        epoch: int,
        specs: list[AppSpec],
        observation: Observation,
        rejected: dict[str, str],
        keep: set[str],
        known: Mapping[str, Any],
    ) -> tuple[set[str], Observation]:
        """PUT the specs. An application Ray refuses is left out (keeping the config it
        runs, if any) and the others are PUT again: one bad application never stops the
        rest. A refusal that names no application changes nothing: the next tick retries.
        On a shared cluster Ray is asked again just before each PUT: if an application
        that is not Rota's changed meanwhile, nothing is PUT this tick."""
        for _ in range(3):
            if self.sharing.active:
                fresh = self.ray.observe()
                if not self.sharing.unchanged(fresh, known):
                    log.info("not PUTting: an application Rota did not deploy changed since this tick looked")
                    return set(), observation
                observation = fresh
            sent = {s.name for s in specs}
            kept = [
                a.deployed_config
                for n, a in observation.apps.items()
                # serve.run's are kept by Ray anyway; one being deleted must not come back
                if n in keep - sent and a.deployed_config and a.source != "imperative" and a.status != "DELETING"
            ]
            configs = [s.to_serve_config() for s in specs] + kept
            # The PUT waits no longer than this process may still act: one that would be
            # answered after the lease lapsed is given up (the next leader PUTs).
            left = self.leadership.left(epoch)
            if left < MIN_PUT_S:
                log.warning("not PUTting: this control plane no longer leads")
                return set(), observation
            self.puts += 1
            try:
                self.ray.apply(configs, within=None if math.isinf(left) else left, by=self.leadership.signature(epoch))
                return sent, self.ray.observe()
            except RayTimedOut as e:  # sent, unanswered: applied if Ray runs it now
                fresh = self.ray.observe()
                taken = (s.name in fresh.apps and config_matches(fresh.apps[s.name].deployed_config, s) for s in specs)
                if fresh.reachable and all(taken):
                    return sent, fresh
                self.ray_error = e.message
                return set(), fresh
            except RayUnavailable as e:
                self.ray_error = e.message
                return set(), Observation(False, {}, e.message)
            except RayRejected as e:
                self.ray_error = e.message
                culprits = refused(e.message, specs)
                log.warning("Ray Serve refused the config (%s): %s", ", ".join(c.name for c in culprits) or "?", e.message[:500])
                for c in culprits:
                    rejected[c.name] = f"Ray Serve refused this application's configuration: {why_refused(e.message, specs, c)}"
                    keep.add(c.name)
                if not culprits:
                    return set(), observation
                specs = [s for s in specs if s not in culprits]
        return set(), observation

    def _record(
        self,
        epoch: int,
        states: list[EndpointState],
        specs: dict[int, AppSpec | None],
        rejected: dict[str, str],
        put: set[str],
        missing: frozenset[str],
        observation: Observation,
    ) -> None:
        now = self.clock()
        with self.db.session() as s:
            for st in states:
                ep = s.get(EndpointRow, st.id)
                spec = specs[st.id]
                if ep is None:
                    continue  # deleted meanwhile
                if spec is not None and spec.name in put:
                    record_applied(s, ep, spec, st.applied, spec.name in missing, now)
                record_observed(s, ep, st, spec, rejected.get(st.app_name), observation, now)
            self.leadership.fence(s, epoch)  # last: the lease row is locked only until the commit
        readiness.watch(self.db, now)  # were ready_by windows serving at their written time?
