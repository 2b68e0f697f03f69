"""A Ray cluster shared with applications Rota did not deploy: which those are, when a PUT
must wait for them, and endpoints that must move out of their way.

Ray's declarative API has no compare-and-swap: a PUT replaces every declarative
application. So Rota carries the others over unchanged, looks again just before it PUTs
(and does not PUT if they changed meanwhile), never PUTs while one of them is being built
(a PUT would restart the build; waits at most ``max_wait_s``), and does not trust a
sudden empty answer (Ray's API answers 200 with no applications when its controller
does not answer in time) until it is seen twice.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping

from sqlalchemy import select

from rota.domain.reconcile import Observation, ObservedApp, building, clashes, foreign
from rota.domain.specs import AppSpec, EndpointState
from rota.store.db import Database
from rota.store.tables import EndpointRow

log = logging.getLogger(__name__)
Known = Mapping[str, tuple[str | None, str | None]]


class Sharing:
    def __init__(self, owner: str | None, own_cluster: bool, max_wait_s: float = 120.0):
        self.owner, self.own_cluster, self.max_wait_s = owner, own_cluster, max_wait_s
        self.held: dict[str, ObservedApp] = {}  # the applications that are not Rota's, as last seen
        self._waiting_since: float | None = None
        self._empty_once = False

    @property
    def active(self) -> bool:
        return bool(self.owner) and not self.own_cluster

    def known(self, db: Database, gateway: AppSpec | None) -> dict[str, tuple[str | None, str | None]]:
        """Every application Rota has a row for (stopped and deleting ones included)."""
        with db.session() as s:
            rows = s.execute(
                select(EndpointRow.app_name, EndpointRow.route_prefix, EndpointRow.file_path, EndpointRow.deployment_name)
            )
            out: dict[str, tuple[str | None, str | None]] = {name: (route, f"{f}:{d}") for name, route, f, d in rows}
        if gateway:
            out[gateway.name] = (gateway.route_prefix, gateway.import_path)
        return out

    def not_rotas(self, observation: Observation, known: Known) -> dict[str, ObservedApp]:
        """What Rota does not count as its own in ``observation`` (on a cluster that is
        Rota's alone: what it will remove)."""
        if self.active:
            return foreign(observation, self.owner or "", known)
        return {n: a for n, a in observation.apps.items() if n not in known}

    def observe(self, observation: Observation, known: Known) -> bool:
        """Update ``held`` from a reachable observation; False: do not PUT on it."""
        if not self.active or not observation.reachable:
            self.held = {}
            return observation.reachable
        if not observation.apps and self.held and not self._empty_once:
            self._empty_once = True
            log.warning("Ray reported no application at all, %d foreign ones a moment ago: not PUTting on that", len(self.held))
            return False
        self._empty_once = False
        self.held = foreign(observation, self.owner or "", known)
        return True

    def may_put(self) -> bool:
        """Not while a foreign application is being built (for at most ``max_wait_s``)."""
        names = building(self.held)
        if not names:
            self._waiting_since = None
            return True
        now = time.monotonic()
        self._waiting_since = self._waiting_since or now
        if now - self._waiting_since < self.max_wait_s:
            log.info("waiting to PUT: Ray is building %s (not Rota's; a PUT would restart that)", ", ".join(names))
            return False
        return True

    def unchanged(self, fresh: Observation, known: Known) -> bool:
        """Just before a PUT: the foreign applications are still as this tick saw them."""
        if not self.active:
            return True
        if not fresh.reachable:
            return False
        now = foreign(fresh, self.owner or "", known)
        return {n: a.deployed_config for n, a in now.items()} == {n: a.deployed_config for n, a in self.held.items()}

    def move_unapplied(self, db: Database, states: list[EndpointState], specs: Mapping[int, AppSpec | None]) -> bool:
        """Endpoints never deployed whose Ray Serve name or route a foreign application
        holds (e.g. created right after a restart, before Rota saw it) get another one."""
        moved = False
        with db.session() as s:
            for st in states:
                spec = specs.get(st.id)
                if spec is None or st.applied is not None or st.ready_generation is not None or not clashes(spec, self.held):
                    continue
                ep = s.get(EndpointRow, st.id)
                if ep is not None:
                    suffix = secrets.token_hex(2)
                    ep.app_name, ep.route_prefix = f"{ep.app_name}-{suffix}", f"{ep.route_prefix}-{suffix}"
                    log.info(
                        "endpoint %s moves to %s: its name or route is held by an application Rota did not deploy",
                        ep.id,
                        ep.route_prefix,
                    )
                    moved = True
        return moved
