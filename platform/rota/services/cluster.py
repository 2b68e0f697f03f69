"""The cluster and the control plane: what the cluster asks of it (the gateway's routing
table, the phase a starting replica reports and a running one's figures: authenticated
by cluster tokens, not user keys), and what an operator sees of the cluster (every application, and whose it is)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from rota.crypto import Cipher, digest
from rota.domain.endpoints import Desired, Engine
from rota.domain.errors import Conflict, Forbidden, RayUnavailable
from rota.domain.invocations import background_limit
from rota.domain.reconcile import Observation, ObservedApp
from rota.domain.specs import GATEWAY_APP, capacity
from rota.domain.status import Derived, EndpointStatus, Phase
from rota.serve.client import RayServe
from rota.services import views
from rota.services.auth import Principal
from rota.services.builds import LLM_SCRIPT
from rota.services.events import set_endpoint_status
from rota.store.db import Database
from rota.store.tables import EndpointRow, ProjectRow, ReplicaStatsRow, TaskRow, utcnow

STATS_EVERY_S = 5.0  # a replica reports every 10 s; more often than this is not kept


@dataclass
class ClusterService:
    db: Database
    cipher: Cipher
    clock: Callable[[], datetime] = utcnow
    ray: RayServe | None = None
    not_rotas: Callable[[Observation], Mapping[str, ObservedApp]] = lambda o: {}
    gateway: str = GATEWAY_APP
    async_reserve: float = 0.25  # the share of an endpoint's limit queued work leaves to synchronous calls
    request_log: bool = True  # ROTA_REQUEST_LOG: the gateways follow it through the routing table
    project_max_inflight: int = 20_000  # ROTA_GATEWAY_PROJECT_MAX_INFLIGHT: followed the same way

    def apps(self, who: Principal) -> list[dict[str, Any]]:
        """Every application on the cluster with whose it is: an endpoint's (a task's own
        included), Rota's base URL, or ``foreign`` (Rota leaves it as it is). Admin keys
        only: the names are every project's."""
        if not who.admin:
            raise Forbidden("the cluster's applications are listed to admin keys only")
        assert self.ray is not None
        observation = self.ray.observe()
        if not observation.reachable:
            raise RayUnavailable(observation.error or "Ray is unreachable")
        held = self.not_rotas(observation)
        with self.db.session() as s:
            rows = s.execute(
                select(EndpointRow.app_name, EndpointRow.id, EndpointRow.name, ProjectRow.name, TaskRow.name)
                .join(ProjectRow, ProjectRow.id == EndpointRow.project_id)
                .outerjoin(TaskRow, TaskRow.id == EndpointRow.owner_task_id)
            ).all()
        ours = {r[0]: {"endpoint": {"id": r[1], "name": r[2], "project": r[3]}, "task": r[4]} for r in rows}
        out = []
        for name, a in sorted(observation.apps.items()):
            owner: dict[str, Any] = {"kind": "foreign"}
            if name not in held and name in ours:
                owner = {"kind": "task" if ours[name]["task"] else "endpoint", **ours[name]}
            elif name not in held and name == self.gateway:
                owner = {"kind": "gateway"}
            out.append({"name": name, "route_prefix": a.route_prefix, "status": a.status, "source": a.source, "owner": owner})
        return out

    def targets(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """Where the dispatcher may send queued work: these endpoints' status and async limit
        (deleted ones are left out)."""
        with self.db.session() as s:
            rows = s.scalars(select(EndpointRow).where(EndpointRow.id.in_(ids), EndpointRow.desired != Desired.DELETED.value))
            return {ep.id: {"status": ep.status, "async_limit": self.async_limit(ep)} for ep in rows}

    @staticmethod
    def limit(ep: EndpointRow) -> int:
        """Requests the gateway admits to ``ep`` at once (its replicas at their most, and its queue)."""
        b = views.bounds(ep)
        return capacity(ep.per_replica, b.max if b else 1, Engine.model_validate(ep.engine or {}).max_queued_requests)

    def async_limit(self, ep: EndpointRow) -> int:
        """Requests in flight up to which queued work is sent: a share of what the replicas
        take at once (never their queue), so a synchronous call finds a free batch slot
        rather than a queue full of background work."""
        b = views.bounds(ep)
        return background_limit(ep.per_replica * max(1, b.max if b else 1), self.async_reserve)

    def report_phase(self, token: str, phase: Phase) -> bool:
        """A starting replica says what it is doing (e.g. downloading the model); it
        speaks for its own endpoint only, the one its token belongs to. False: no
        endpoint has that token."""
        with self.db.session() as s:
            ep = s.scalar(select(EndpointRow).where(EndpointRow.token_hash == digest(token)))
            if ep is None:
                return False
            if phase not in (Phase.DOWNLOADING_MODEL, Phase.ENGINE_INITIALIZING):
                return True  # READY is Ray Serve's to say
            ep.reported_phase = phase.value
            if EndpointStatus(ep.status) in EndpointStatus.starting():
                set_endpoint_status(s, ep, Derived(EndpointStatus(ep.status), phase), self.clock())
            return True

    def report_stats(self, token: str, replica: str, figures: dict[str, float | None]) -> bool:
        """A running replica's figures (its engine's gauges, its hardware), for its own
        endpoint only, from a replica Ray Serve runs for it; one every ``STATS_EVERY_S`` per
        replica is kept. False: no endpoint has that token."""
        now = self.clock().timestamp()
        with self.db.session() as s:
            ep = s.scalar(select(EndpointRow).where(EndpointRow.token_hash == digest(token)))
            if ep is None:
                return False
            if replica not in (ep.replica_ids or []):
                raise Conflict(f"replica: {replica[:40]!r} is not one this endpoint runs (yet)", field="replica")
            last = s.scalar(
                select(func.max(ReplicaStatsRow.at)).where(
                    ReplicaStatsRow.endpoint_id == ep.id, ReplicaStatsRow.replica == replica
                )
            )
            if last is None or now - last >= STATS_EVERY_S:
                s.add(ReplicaStatsRow(endpoint_id=ep.id, replica=replica, at=now, **figures))
            return True

    def routing_table(self, keys: list[dict[str, Any]]) -> dict[str, Any]:
        with self.db.session() as s:
            projects, unlogged = {}, []
            for i, n, logged in s.execute(select(ProjectRow.id, ProjectRow.name, ProjectRow.request_log)).all():
                projects[i] = n
                if logged is False:
                    unlogged.append(i)
            rows = s.scalars(select(EndpointRow).where(EndpointRow.desired != Desired.DELETED.value)).all()
            endpoints = []
            for ep in rows:
                engine = Engine.model_validate(ep.engine or {})
                limit = self.limit(ep)
                endpoints.append(
                    {
                        "id": ep.id,
                        "routing_key": ep.routing_key,
                        "project_id": ep.project_id,
                        "project": projects.get(ep.project_id),
                        "app": ep.app_name,
                        "route_prefix": ep.route_prefix,
                        "status": ep.status,
                        "message": ep.message,
                        "token": self.cipher.decrypt(ep.token) if ep.token_arg else None,
                        "created": int(ep.created_at.timestamp()),
                        "max_concurrency": limit,
                        "async_limit": self.async_limit(ep),
                        "content_logging": bool(engine.enable_content_logging),
                        "stream_usage": ep.file_path == LLM_SCRIPT,  # vLLM reports usage on a stream's last chunk
                    }
                )
        return {
            "keys": keys,
            "endpoints": endpoints,
            "request_log": self.request_log,
            "unlogged_projects": unlogged,
            "project_max_inflight": self.project_max_inflight,
        }
