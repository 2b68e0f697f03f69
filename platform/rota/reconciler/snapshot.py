"""The reconciler's snapshot: the endpoints with something to reconcile, as plain values."""

from __future__ import annotations

import logging

from sqlalchemy import not_, or_, select

from rota.crypto import Cipher
from rota.domain.endpoints import Desired, Scaling
from rota.domain.specs import EndpointState
from rota.domain.status import EndpointStatus
from rota.services import views
from rota.store.db import Database
from rota.store.tables import EndpointRow

log = logging.getLogger(__name__)

# Endpoints with something to reconcile: all but those settled where nothing runs (stopped,
# or waiting for a schedule's first fire). At 10,000 tasks waiting for their first fire,
# loading all on every tick would be what costs.
_SETTLED = or_(
    (EndpointRow.status == EndpointStatus.STOPPED.value) & (EndpointRow.desired == Desired.STOPPED.value),
    (EndpointRow.status == EndpointStatus.PENDING.value)
    & (EndpointRow.desired == Desired.RUNNING.value)
    & EndpointRow.scaling.is_(None)
    & EndpointRow.scheduled_min.is_(None),
)
_TO_RECONCILE = not_(_SETTLED)


def state_of(ep: EndpointRow, cipher: Cipher) -> EndpointState:
    scaling = Scaling.model_validate(ep.scaling) if ep.scaling else None
    applied = (ep.applied_min, ep.applied_max) if ep.applied_min is not None and ep.applied_max is not None else None
    return EndpointState(
        id=ep.id,
        app_name=ep.app_name,
        route_prefix=ep.route_prefix,
        import_path=f"{ep.file_path}:{ep.deployment_name}",
        ingress=ep.ingress,
        desired=ep.desired,
        bounds=views.bounds(ep),
        args=dict(ep.args or {}),
        env=cipher.decrypt_map(ep.env or {}),
        resources=dict(ep.resources or {}),
        per_replica=ep.per_replica,
        cooldown_s=scaling.cooldown_period_s if scaling else None,
        target_ongoing=scaling.target_ongoing_requests if scaling else None,
        token=cipher.decrypt(ep.token) if ep.token_arg else None,
        token_arg=ep.token_arg,
        generation=ep.generation,
        ready_generation=ep.ready_generation,
        status=ep.status,
        reported_phase=ep.reported_phase,
        applied=applied,
    )


def snapshot(db: Database, cipher: Cipher) -> tuple[list[EndpointState], set[str]]:
    """One snapshot: everything a tick PUTs and records comes from it. Rows that cannot be
    read are logged and their applications left as Ray Serve has them."""
    states, unreadable = [], set()
    with db.session() as s:
        for row in s.scalars(select(EndpointRow).where(_TO_RECONCILE).order_by(EndpointRow.id)):
            try:
                states.append(state_of(row, cipher))
            except Exception:  # one bad row must not stop the others
                log.exception("endpoint %s cannot be reconciled; its application is left as it is", row.id)
                unreadable.add(row.app_name)
    return states, unreadable
