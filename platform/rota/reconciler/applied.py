"""The events of what Ray Serve just took from a PUT: exactly what was sent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from rota.domain.events import EventKind
from rota.domain.specs import AppSpec
from rota.services.events import record
from rota.store.tables import EndpointRow


def record_applied(
    s: Session, ep: EndpointRow, spec: AppSpec, before: tuple[int, int] | None, was_missing: bool, now: datetime
) -> None:
    """Events for what Ray Serve just took: a first deploy, a redeploy of an application
    Ray lost (e.g. a restarted cluster), or an in-place rescale. ``before`` is what the
    snapshot said was applied; what is recorded is exactly what was PUT."""
    new = (spec.min_replicas, spec.max_replicas)
    data = {"min_replicas": new[0], "max_replicas": new[1]}
    if was_missing and before is not None:
        record(
            s,
            ep,
            EventKind.DEPLOYING,
            f"redeploying with replicas {_b(*new)}: Ray Serve no longer had it",
            {**data, "redeploy": True},
            at=now,
        )
    elif before == new:
        return
    elif before is None:
        record(
            s,
            ep,
            EventKind.DEPLOYING,
            f"deploying {spec.import_path} at {spec.route_prefix} with replicas {_b(*new)}",
            data,
            at=now,
        )
    else:
        record(
            s,
            ep,
            EventKind.SCALED,
            f"scaled {_b(*before)} -> {_b(*new)} in place",
            {"from": {"min_replicas": before[0], "max_replicas": before[1]}, "to": data},
            at=now,
        )
    ep.applied_min, ep.applied_max = new


def _b(lo: int, hi: int) -> str:
    return f"{lo}" if lo == hi else f"{lo}..{hi}"
