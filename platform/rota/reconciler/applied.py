"""What a reconcile tick records of each endpoint: the events of what Ray Serve just took
from a PUT (exactly what was sent), and the status derived from what it observed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from rota.domain.events import EventKind
from rota.domain.reconcile import Observation, config_matches
from rota.domain.specs import AppSpec, EndpointState, settings_mark
from rota.domain.status import EndpointStatus, Observed, Phase, Replicas, derive
from rota.services.events import record, set_endpoint_status
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


def record_observed(
    s: Session,
    ep: EndpointRow,
    st: EndpointState,
    spec: AppSpec | None,
    refused: str | None,
    observation: Observation,
    now: datetime,
) -> None:
    """An endpoint's status from what the tick observed of its application, and what
    Ray now runs for it (replicas, the settings it took)."""
    obs = observation.apps.get(st.app_name)
    observed = Observed(reachable=observation.reachable, rejected=refused)
    if observation.reachable and obs is not None:
        observed = Observed(
            reachable=True,
            present=True,
            app_status=obs.status,
            message=obs.message or None,
            rejected=refused,
            config_current=spec is not None and config_matches(obs.deployed_config, spec),
            routed=observation.routed(st.route_prefix),
            replicas=Replicas(len(obs.running_replica_ids), obs.starting, obs.pending, obs.target_replicas, obs.stopping),
        )
    rolling = st.ready_generation is not None and st.generation > st.ready_generation
    reported = Phase(st.reported_phase) if st.reported_phase else None
    derived = derive(st.desired, st.bounds is not None, EndpointStatus(ep.status), rolling, observed, reported)
    set_endpoint_status(s, ep, derived, now)
    if derived.status not in EndpointStatus.starting():
        ep.reported_phase = None  # the next start reports afresh
    if derived.status is EndpointStatus.RUNNING:
        ep.ready_generation = st.generation  # the generation this tick saw served, not a newer one
    if observed.config_current or refused:  # Ray runs them, or they were refused: either is their outcome
        ep.taken_mark = settings_mark(st.generation, st.bounds, st.cooldown_s, st.target_ongoing)
    if observation.reachable:
        target, ids = (obs.target_replicas, list(obs.running_replica_ids)) if obs else (None, [])
        if (target, ids) != (ep.target_replicas, list(ep.replica_ids or [])) or ep.observed_at is None:
            ep.target_replicas, ep.replica_ids, ep.observed_at = target, ids, now
    if derived.status is EndpointStatus.TERMINATED:
        s.delete(ep)  # its events stay
    elif derived.status in (EndpointStatus.STOPPED, EndpointStatus.PENDING):
        ep.applied_min = ep.applied_max = ep.taken_mark = None  # a start deploys afresh
