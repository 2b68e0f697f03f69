"""Watch fired ready_by scale-ups: were their replicas serving at the written time?

The reconciler calls ``watch`` once per tick, after recording what it saw: each open run
(``rota.domain.readiness``) moves on with the replicas its endpoint serves (RUNNING: Ray
Serve healthy and its route served) and says so in a ``ready`` event of its task.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rota.domain.coldstart import duration
from rota.domain.events import EventKind
from rota.domain.readiness import LATE, NEVER, ON_TIME, OPEN, PENDING, READY_LATE, step
from rota.domain.schedule import get_timezone, to_local
from rota.domain.status import EndpointStatus
from rota.services.events import record
from rota.store.db import Database
from rota.store.tables import EndpointRow, RunRow, TaskRow

log = logging.getLogger(__name__)
GIVE_UP = timedelta(hours=24)  # a window still not ready after this is never


def watch(db: Database, now: datetime) -> int:
    """Move every open ready_by run on (its own transaction: a failure here is logged and
    never holds back the reconciler); returns how many changed state."""
    try:
        with db.session() as s:
            return _watch(s, now)
    except Exception:
        log.exception("watching ready_by windows failed; the next tick looks again")
        return 0


def _watch(s: Session, now: datetime) -> int:
    rows = s.execute(
        select(RunRow, TaskRow, EndpointRow)
        .join(TaskRow, TaskRow.id == RunRow.task_id)
        .outerjoin(EndpointRow, EndpointRow.id == TaskRow.endpoint_id)
        .where(RunRow.ready_state.in_(OPEN))
    ).all()
    changed = 0
    for run, task, ep in rows:
        later = s.scalar(
            select(func.min(RunRow.scheduled_at)).where(RunRow.task_id == task.id, RunRow.scheduled_at > run.scheduled_at)
        )
        # Moved on: a later entry's written time passed, the task was deactivated, or a day went by.
        moved_on = (later is not None and later <= now) or task.status == "idle" or now - run.scheduled_at > GIVE_UP
        n = len(ep.replica_ids or []) if ep is not None and ep.status == EndpointStatus.RUNNING.value else 0
        w = step(run.ready_state or PENDING, run.ready_at, run.scheduled_at, run.min_replicas, n, now, moved_on)
        run.ready_at = w.ready_at
        if w.changed:
            run.ready_state = w.state
            _say(s, task, run, n, now)
            changed += 1
    return changed


def _say(s: Session, task: TaskRow, run: RunRow, serving: int, now: datetime) -> None:
    tz = get_timezone(task.timezone)
    due = to_local(tz, run.scheduled_at).strftime("%H:%M:%S %Z")
    need = f"{run.min_replicas} replica{'s' if run.min_replicas != 1 else ''}"
    early = f" (fired {duration(run.lead_s or 0)} early)"
    if run.ready_state == ON_TIME and run.ready_at is not None:
        ahead = (run.scheduled_at - run.ready_at).total_seconds()
        text = f"ready on time: {need} serving at {due}, {duration(ahead)} before{early}"
    elif run.ready_state == LATE:
        text = f"not ready at {due}: {serving} of {need} serving{early}"
    elif run.ready_state == READY_LATE and run.ready_at is not None:
        text = f"ready {duration((run.ready_at - run.scheduled_at).total_seconds())} late: {need} serving since {to_local(tz, run.ready_at):%H:%M:%S}"
    elif run.ready_state == NEVER:
        text = f"never ready for {due}: the next entry took over first"
    else:
        return
    data = {
        "scheduled_at": run.scheduled_at.isoformat(),
        "state": run.ready_state,
        "on_time": run.ready_state == ON_TIME,
        "ready_at": run.ready_at.isoformat() if run.ready_at else None,
        "min_replicas": run.min_replicas,
        "lead_s": run.lead_s,
    }
    record(s, task, EventKind.READY, text, data, at=now)
