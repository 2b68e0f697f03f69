"""What the cluster asks of the control plane: the gateway's routing table, and the phase
a starting replica reports. Both are authenticated by cluster tokens, not user keys."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from rota.crypto import Cipher, digest
from rota.domain.endpoints import Desired, Engine
from rota.domain.specs import capacity
from rota.domain.status import Derived, EndpointStatus, Phase
from rota.services import views
from rota.services.events import set_endpoint_status
from rota.store.db import Database
from rota.store.tables import EndpointRow, ProjectRow, utcnow


@dataclass
class ClusterService:
    db: Database
    cipher: Cipher
    clock: Callable[[], datetime] = utcnow

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

    def routing_table(self, keys: Sequence[tuple[str, int]]) -> dict[str, Any]:
        with self.db.session() as s:
            projects = {i: n for i, n in s.execute(select(ProjectRow.id, ProjectRow.name)).all()}
            rows = s.scalars(select(EndpointRow).where(EndpointRow.desired != Desired.DELETED.value)).all()
            endpoints = []
            for ep in rows:
                b = views.bounds(ep)
                queued = Engine.model_validate(ep.engine or {}).max_queued_requests
                endpoints.append(
                    {
                        "routing_key": ep.routing_key,
                        "project_id": ep.project_id,
                        "project": projects.get(ep.project_id),
                        "app": ep.app_name,
                        "route_prefix": ep.route_prefix,
                        "status": ep.status,
                        "message": ep.message,
                        "token": self.cipher.decrypt(ep.token) if ep.token_arg else None,
                        "created": int(ep.created_at.timestamp()),
                        "max_concurrency": capacity(ep.per_replica, b.max if b else 1, queued),
                    }
                )
        return {"keys": [{"hash": h, "project_id": p} for h, p in keys], "endpoints": endpoints}
