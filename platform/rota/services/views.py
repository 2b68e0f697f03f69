"""What the API shows of a row: endpoints and tasks, never a secret."""

from __future__ import annotations

from datetime import timedelta
from itertools import islice
from typing import Any

from rota.domain.coldstart import ColdStartStats, early_note
from rota.domain.endpoints import (
    MASK,
    SOURCE_FIELDS,
    AsyncSettings,
    Desired,
    EndpointBrief,
    EndpointKind,
    EndpointPublic,
    Engine,
    ReplicasPublic,
    Resources,
    Scaling,
)
from rota.domain.schedule import Occurrence, ScheduleSpec, TaskType, occurrences, to_local
from rota.domain.specs import Bounds, bounds_of, settings_mark
from rota.domain.status import EndpointStatus, ErrorCode, Phase
from rota.domain.tasks import FireTime, Readiness, RunPublic, ScheduleEntry, TaskPublic, TaskStatus
from rota.store.tables import EndpointRow, RunRow, TaskRow

_EPS = timedelta(microseconds=1)


def as_create(ep: EndpointRow, env: dict[str, str]) -> dict[str, Any]:
    """The endpoint as the request that would create it (``env``: its values decrypted)."""
    out: dict[str, Any] = {
        "name": ep.name,
        "routing_key": ep.routing_key,
        "scaling": ep.scaling,
        "engine": ep.engine or {},
        "async_invocations": ep.async_settings or {},
        "env": env,
    }
    renamed = {"hf_model_repo": ep.model, "model_path": ep.model, "args": ep.args or {}, "resources": ep.resources or {}}
    out.update({k: renamed[k] if k in renamed else getattr(ep, k) for k in SOURCE_FIELDS[EndpointKind(ep.kind)]})
    return {k: v for k, v in out.items() if v is not None}


def bounds(ep: EndpointRow) -> Bounds | None:
    own = Scaling.model_validate(ep.scaling).bounds if ep.scaling else None
    scheduled = (ep.scheduled_min, ep.scheduled_max) if ep.scheduled_min is not None and ep.scheduled_max is not None else None
    return bounds_of(own, scheduled)


def brief(ep: EndpointRow) -> EndpointBrief:
    b = bounds(ep)
    replicas = ReplicasPublic(
        min=b.min if b else None,
        max=b.max if b else None,
        source=b.source if b else "none",
        target=ep.target_replicas,
        running=len(ep.replica_ids or []),
        ids=list(ep.replica_ids or []),
    )
    return EndpointBrief(
        id=ep.id,
        name=ep.name,
        routing_key=ep.routing_key,
        status=EndpointStatus(ep.status),
        phase=Phase(ep.phase) if ep.phase else None,
        error_code=ErrorCode(ep.error_code) if ep.error_code else None,
        message=ep.message,
        replicas=replicas,
        converged=converged(ep, b),
    )


def converged(ep: EndpointRow, b: Bounds | None) -> bool:
    """Ray Serve runs what the endpoint says now, so its status describes its latest
    settings (not a state left by older ones)."""
    if ep.desired != Desired.RUNNING.value:
        return ep.status == EndpointStatus.STOPPED.value and ep.desired == Desired.STOPPED.value
    if b is None:
        return ep.status == EndpointStatus.PENDING.value
    sc = Scaling.model_validate(ep.scaling) if ep.scaling else None
    return ep.taken_mark == settings_mark(
        ep.generation, b, sc.cooldown_period_s if sc else None, sc.target_ongoing_requests if sc else None
    )


def endpoint(ep: EndpointRow, project: str, serve_url: str, owner_task: str | None) -> EndpointPublic:
    app = ep.kind == EndpointKind.APPLICATION.value
    return EndpointPublic(
        **brief(ep).model_dump(),
        project=project,
        kind=EndpointKind(ep.kind),
        template=ep.template,
        flavor=ep.flavor,
        gpu_type=ep.gpu_type,
        gpu_count=ep.gpu_count,
        model=ep.model,
        revision=ep.revision,
        file_path=ep.file_path,
        deployment_name=ep.deployment_name,
        args=ep.args if app else None,
        resources=ep.resources or {},
        scaling=Scaling.model_validate(ep.scaling) if ep.scaling else None,
        engine=Engine.model_validate(ep.engine or {}),
        async_invocations=AsyncSettings.model_validate(ep.async_settings or {}),
        env=dict.fromkeys(ep.env or {}, MASK),
        desired=Desired(ep.desired),
        owner_task=owner_task,
        authenticated=ep.token_arg is not None,
        base_url=f"{serve_url}/v1",
        url=f"{serve_url}{ep.route_prefix}",
        created_at=ep.created_at,
        updated_at=ep.updated_at,
        observed_at=ep.observed_at,
    )


def spec_of(task: TaskRow, lead: timedelta = timedelta(0)) -> ScheduleSpec:
    return ScheduleSpec.build(task.type, task.timezone, task.schedule, bool(task.ready_by), lead)


def fire_time(spec: ScheduleSpec, o: Occurrence, figures: ColdStartStats | None) -> FireTime:
    local = to_local(spec.tz, o.at)
    ready = to_local(spec.tz, o.ready_by) if o.ready_by else None
    e = o.entry
    return FireTime(
        utc=o.at,
        local=local.isoformat(),
        entry=e.index,
        min_replicas=e.min_replicas,
        max_replicas=e.max_replicas,
        ready_by=o.ready_by,
        ready_by_local=ready.isoformat() if ready else None,
        note=early_note(local, ready, e.min_replicas, spec.timezone, figures) if ready and figures and o.at < o.written else None,
    )


def task(
    t: TaskRow,
    ep: EndpointRow | None,
    project: str,
    run: RunRow | None,
    figures: ColdStartStats | None = None,
    readiness: Readiness | None = None,
) -> TaskPublic:
    """``figures``: its endpoint's cold starts (a ready_by task's fires are early by their lead)."""
    spec = spec_of(t, timedelta(seconds=figures.lead_s) if figures else timedelta(0))
    active = t.status == TaskStatus.ACTIVE.value and t.next_fire_at is not None
    # The next fires, known by their written instants: from the stored next fire (its lead may
    # have changed since), never one the last run applied.
    after = t.next_fire_at - spec.lead - _EPS if active and t.next_fire_at else None
    if after is not None and run is not None:
        after = max(after, run.scheduled_at)
    fires = [fire_time(spec, o, figures) for o in islice(occurrences(spec, after), 3)] if after else []
    last = run_public(run) if run is not None else None
    owns = ep is not None and ep.owner_task_id == t.id
    return TaskPublic(
        id=t.id,
        name=t.name,
        project=project,
        endpoint=brief(ep) if ep is not None else None,
        owns_endpoint=owns,
        file_path=ep.file_path if ep and owns else None,
        deployment_name=ep.deployment_name if ep and owns else None,
        args=ep.args if ep and owns else None,
        env=dict.fromkeys(ep.env or {}, MASK) if ep and owns else None,
        resources=Resources.model_validate(ep.resources or {}) if ep and owns else None,
        type=TaskType(t.type),
        timezone=t.timezone,
        schedule=[ScheduleEntry.model_validate(e) for e in t.schedule],
        status=TaskStatus(t.status),
        status_reason=t.status_reason,
        created_at=t.created_at,
        updated_at=t.updated_at,
        activated_at=t.activated_at,
        next_fire_at=t.next_fire_at if active else None,
        next_fire_local=to_local(spec.tz, t.next_fire_at).isoformat() if active and t.next_fire_at else None,
        next_fires=fires,
        last_run=last,
        ready_by=bool(t.ready_by),
        cold_start=figures,
        readiness=readiness,
    )


def run_public(run: RunRow) -> RunPublic:
    return RunPublic(
        scheduled_at=run.scheduled_at,
        fired_at=run.fired_at,
        entry=run.entry,
        min_replicas=run.min_replicas,
        max_replicas=run.max_replicas,
        trigger=run.trigger,
        ready_state=run.ready_state,
        ready_at=run.ready_at,
        lead_s=run.lead_s,
    )
