"""Applying fires: a fire records a run and writes the replica bounds of the endpoint the
task drives. Never calls Ray.

``process_due`` is the single entry point: the scheduled job, the periodic sweep and the
catch-up after a restart all call it. The run row is unique on (task, scheduled instant)
and is written in the same transaction as the bounds, so a fire is applied exactly once
whatever crashes or races happen around it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rota.domain.errors import Conflict
from rota.domain.events import EventKind
from rota.domain.schedule import Occurrence, ScheduleSpec, TaskType, occurrences, plan_catch_up, to_local
from rota.domain.tasks import TaskStatus
from rota.services.coldstarts import ReadyBy, spec_for
from rota.services.events import record, transition
from rota.store.db import Database
from rota.store.tables import EndpointRow, RunRow, TaskRow

log = logging.getLogger(__name__)

SCHEDULABLE = (TaskStatus.ACTIVE.value,)


@dataclass(frozen=True)
class FireResult:
    applied: Occurrence | None
    next_fire_at: datetime | None
    missed: bool = False


def _fmt(spec: ScheduleSpec, at: datetime) -> str:
    return f"{at.strftime('%Y-%m-%dT%H:%M:%SZ')} ({to_local(spec.tz, at).strftime('%Y-%m-%d %H:%M:%S %Z')})"


def process_due(
    db: Database, task_id: int, now: datetime, trigger: str, grace: timedelta, ready: ReadyBy = ReadyBy()
) -> FireResult:
    """Apply what is due for one task at ``now`` and compute its next fire (``ready``: how
    early its ready_by entries fire)."""
    try:
        with db.session() as s:
            return _process_due(s, task_id, now, trigger, grace, ready)
    except Conflict:
        # Another path applied this fire first: exactly-once holds, nothing to do.
        log.info("fire of task %s already applied", task_id)
        with db.session() as s:
            task = s.get(TaskRow, task_id)
            return FireResult(None, task.next_fire_at if task else None)


def _process_due(s: Session, task_id: int, now: datetime, trigger: str, grace: timedelta, ready: ReadyBy) -> FireResult:
    task = s.get(TaskRow, task_id)
    if task is None or task.status not in SCHEDULABLE or task.due_since is None:
        return FireResult(None, None)
    spec, _ = spec_for(s, task, ready)
    last = s.scalar(select(func.max(RunRow.scheduled_at)).where(RunRow.task_id == task_id))
    since = max(task.due_since, last) if last else task.due_since
    plan = plan_catch_up(spec, since, now, grace)
    if plan.missed is not None:
        transition(
            s,
            task,
            TaskStatus.MISSED,
            EventKind.MISSED,
            f"missed the fire scheduled at {_fmt(spec, plan.missed.at)}: Rota was not running and it is "
            f"more than {grace.total_seconds():.0f}s late",
            reason="missed its one-off fire (the control plane was down past the grace period)",
            at=now,
        )
    elif plan.apply is not None:
        _apply(s, task, spec, plan.apply, now, trigger, plan.skipped)
    # Fires are known by their written instants (``since``); a ready_by one fires earlier.
    occ = next((o for o in occurrences(spec, max(now, since)) if o.at > now), None) if task.status in SCHEDULABLE else None
    task.next_fire_at = occ.at if occ else None
    return FireResult(plan.apply if plan.missed is None else None, task.next_fire_at, plan.missed is not None)


def _apply(s: Session, task: TaskRow, spec: ScheduleSpec, occ: Occurrence, now: datetime, trigger: str, skipped: int) -> None:
    e = occ.entry
    early = (occ.written - occ.at).total_seconds() if occ.ready_by else None
    s.add(
        RunRow(
            task_id=task.id,
            scheduled_at=occ.written,
            fired_at=now,
            entry=e.index,
            min_replicas=e.min_replicas,
            max_replicas=e.max_replicas,
            trigger=trigger,
            ready_state="pending" if occ.ready_by else None,
            lead_s=early,
        )
    )
    s.flush()  # the unique (task, scheduled_at) check happens here
    data = {
        "scheduled_at": occ.written.isoformat(),
        "entry": e.index,
        "min_replicas": e.min_replicas,
        "max_replicas": e.max_replicas,
        "lateness_ms": round((now - occ.at).total_seconds() * 1000, 1),
        "trigger": trigger,
    }
    bounds = f"replicas {e.min_replicas}..{e.max_replicas}"
    if early is not None:
        data["early_s"] = round(early, 1)
        bounds += f", {early:.0f}s early so that they serve by the written time" if early else ""
    if trigger == "catch_up":
        note = f"; {skipped} earlier fire(s) superseded" if skipped else ""
        record(
            s,
            task,
            EventKind.CAUGHT_UP,
            f"caught up at {_fmt(spec, now)} on the entry scheduled at {_fmt(spec, occ.written)}: {bounds}{note}",
            {**data, "skipped": skipped},
            at=now,
        )
    else:
        record(
            s,
            task,
            EventKind.FIRED,
            f"fired at {_fmt(spec, now)} for entry {e.index} scheduled at {_fmt(spec, occ.written)}: {bounds}",
            data,
            at=now,
        )
    task.updated_at = now
    ep = s.get(EndpointRow, task.endpoint_id)
    if ep is not None:
        ep.scheduled_min, ep.scheduled_max, ep.updated_at = e.min_replicas, e.max_replicas, now
        record(
            s,
            ep,
            EventKind.SCHEDULED,
            f"task {task.name} set {bounds} (entry {e.index}); Ray Serve's autoscaler works within them",
            {"task": task.name, **data},
            at=now,
        )
    if spec.type is TaskType.ONE_OFF:
        transition(s, task, TaskStatus.COMPLETED, EventKind.COMPLETED, "one-off fired; its endpoint keeps these bounds", at=now)
