"""Applying fires: a fire records a run and writes desired replica bounds (the task's
own application's, or those of the endpoint it drives). Never calls Ray.

``process_due`` is the single entry point: the scheduled job, the periodic sweep and the
catch-up after a restart all call it. The run row is unique on (task, scheduled instant)
and is written in the same transaction as the desired bounds, so a fire is applied
exactly once whatever crashes or races happen around it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from rota.domain.schedule import Occurrence, ScheduleSpec, next_occurrence, plan_catch_up, to_local
from rota.domain.status import EventKind, TaskStatus, TaskType
from rota.services.events import record, transition
from rota.store.db import Database
from rota.store.tables import EndpointRow, RunRow, TaskRow

log = logging.getLogger(__name__)

SCHEDULABLE = (TaskStatus.ACTIVE.value, TaskStatus.FAILED.value)


def spec_of(task: TaskRow) -> ScheduleSpec:
    return ScheduleSpec.build(task.type, task.timezone, task.schedule)


@dataclass(frozen=True)
class FireResult:
    applied: Occurrence | None
    next_fire_at: datetime | None


def _fmt(spec: ScheduleSpec, at: datetime) -> str:
    return f"{at.strftime('%Y-%m-%dT%H:%M:%SZ')} ({to_local(spec.tz, at).strftime('%Y-%m-%d %H:%M:%S %Z')})"


def process_due(db: Database, task_id: int, now: datetime, trigger: str, grace: timedelta) -> FireResult:
    """Apply what is due for one task at ``now`` and compute its next fire."""
    try:
        with db.session() as s:
            return _process_due(s, task_id, now, trigger, grace)
    except IntegrityError:
        # Another path applied this fire first: exactly-once holds, nothing to do.
        log.info("fire of task %s already applied", task_id)
        with db.session() as s:
            task = s.get(TaskRow, task_id)
            return FireResult(None, task.next_fire_at if task else None)


def _process_due(s, task_id: int, now: datetime, trigger: str, grace: timedelta) -> FireResult:
    task = s.get(TaskRow, task_id)
    if task is None or task.status not in SCHEDULABLE or task.due_since is None:
        return FireResult(None, None)
    spec = spec_of(task)
    last = s.scalar(select(func.max(RunRow.scheduled_at)).where(RunRow.task_id == task_id))
    since = max(task.due_since, last) if last else task.due_since
    plan = plan_catch_up(spec, since, now, grace)
    applied = None
    if plan.missed is not None:
        transition(
            s, task, TaskStatus.FAILED, EventKind.MISSED,
            f"missed the fire scheduled at {_fmt(spec, plan.missed.at)}: Rota was not running and it is "
            f"more than {grace.total_seconds():.0f}s late",
            reason="missed its one-off fire (control plane was down past the grace period)", at=now,
        )  # fmt: skip
    elif plan.apply is not None:
        applied = plan.apply
        _apply(s, task, spec, applied, now, trigger, plan.skipped)
    nxt = None
    if TaskStatus(task.status).value in SCHEDULABLE:
        occ = next_occurrence(spec, max(now, since))
        nxt = occ.at if occ else None
    task.next_fire_at = nxt
    return FireResult(applied, nxt)


def _apply(s, task: TaskRow, spec: ScheduleSpec, occ: Occurrence, now: datetime, trigger: str, skipped: int) -> None:
    e = occ.entry
    s.add(
        RunRow(
            task_id=task.id, scheduled_at=occ.at, fired_at=now, entry=e.index,
            min_replicas=e.min_replicas, max_replicas=e.max_replicas, trigger=trigger,
        )
    )  # fmt: skip
    s.flush()  # the unique (task, scheduled_at) check happens here
    lateness_ms = (now - occ.at).total_seconds() * 1000
    data = {
        "scheduled_at": occ.at.isoformat(), "entry": e.index, "min_replicas": e.min_replicas,
        "max_replicas": e.max_replicas, "lateness_ms": round(lateness_ms, 1), "trigger": trigger,
    }  # fmt: skip
    if trigger == "catch_up":
        note = f"; {skipped} earlier fire(s) superseded" if skipped else ""
        record(
            s, task, EventKind.CAUGHT_UP,
            f"caught up at {_fmt(spec, now)} on the entry scheduled at {_fmt(spec, occ.at)}: "
            f"replicas {e.min_replicas}..{e.max_replicas}{note}",
            {**data, "skipped": skipped}, at=now,
        )  # fmt: skip
    else:
        record(
            s, task, EventKind.FIRED,
            f"fired at {_fmt(spec, now)} for entry {e.index} scheduled at {_fmt(spec, occ.at)}: "
            f"replicas {e.min_replicas}..{e.max_replicas}",
            data, at=now,
        )  # fmt: skip
    task.desired_min, task.desired_max = e.min_replicas, e.max_replicas
    task.updated_at = now
    if task.endpoint_id is not None:
        ep = s.get(EndpointRow, task.endpoint_id)
        if ep is not None:
            ep.scheduled_min, ep.scheduled_max = e.min_replicas, e.max_replicas
            ep.updated_at = now
            record(
                s, ep, EventKind.SCHEDULED,
                f"task {task.name} set replicas {e.min_replicas}..{e.max_replicas} (entry {e.index}); "
                "Ray Serve's autoscaler works within them",
                {"task": task.name, **data}, at=now,
            )  # fmt: skip
    if spec.type is TaskType.ONE_OFF:
        transition(s, task, TaskStatus.COMPLETED, EventKind.COMPLETED, "one-off task fired; its application keeps running until the task is deleted", at=now)
