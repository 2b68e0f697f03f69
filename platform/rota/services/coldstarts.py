"""Measured cold starts, kept per endpoint, and the lead of a task's ``ready_by`` entries.

A start is measured when an endpoint turns RUNNING (``note_status``, called where every
status change is recorded) from its own STATUS events; the last ``KEEP`` are kept. The
figures are over the last ``window`` wakes (scale-ups from zero, what a schedule does) or,
with none yet, deploys. An endpoint with none measured borrows those of the project's
endpoints of the same template and GPU type, then its template's estimate, then the
stated default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from rota.catalog import Catalog
from rota.config import Settings
from rota.domain.coldstart import RUNNING, Change, ColdStart, ColdStartStats, measure, stats
from rota.domain.events import EventKind
from rota.domain.schedule import ScheduleSpec
from rota.store.tables import ColdStartRow, EndpointRow, EventRow, TaskRow

KEEP = 50  # starts kept per endpoint
LOOK_BACK = 64  # status events read to find where a start began


@dataclass(frozen=True)
class ReadyBy:
    """How early ``ready_by`` fires: the p95 of the last ``window`` starts plus ``margin_s``;
    before any start was measured, the template's estimate or ``default_s``."""

    margin_s: float = 30.0
    default_s: float = 300.0
    window: int = 20
    estimates: Mapping[str, float] = field(default_factory=dict)  # template -> its estimated cold start (s)

    @classmethod
    def of(cls, settings: Settings, catalog: Catalog) -> ReadyBy:
        estimates = {t.name: t.cold_start_s for t in catalog.templates if t.cold_start_s is not None}
        return cls(settings.ready_by_margin_s, settings.cold_start_default_s, estimates=estimates)


def note_status(s: Session, ep: EndpointRow, before: str | None, after: str, at: datetime) -> ColdStart | None:
    """Record the cold start that ``ep`` turning RUNNING (at ``at``) ends, if it ends one.
    Call after the status event is added: it is read back with the ones before it."""
    if after != RUNNING or before == RUNNING:
        return None
    rows = s.execute(
        select(EventRow.at, EventRow.data)
        .where(EventRow.endpoint_id == ep.id, EventRow.kind == EventKind.STATUS.value)
        .order_by(EventRow.id.desc())
        .limit(LOOK_BACK)
    ).all()
    changes = [Change(r.at, (r.data or {}).get("to", ""), (r.data or {}).get("phase")) for r in reversed(rows)]
    start = measure(changes, since_created=len(rows) < LOOK_BACK)
    if start is None:
        return None
    s.add(
        ColdStartRow(
            project_id=ep.project_id,
            endpoint_id=ep.id,
            template=ep.template,
            gpu_type=ep.gpu_type,
            began_at=start.began_at,
            ready_at=start.ready_at,
            phases={k: round(v, 3) for k, v in start.phases.items()},
            kind=start.kind,
        )
    )
    s.flush()
    kept = select(ColdStartRow.id).where(ColdStartRow.endpoint_id == ep.id).order_by(ColdStartRow.id.desc()).limit(KEEP)
    s.execute(delete(ColdStartRow).where(ColdStartRow.endpoint_id == ep.id, ColdStartRow.id.not_in(kept.scalar_subquery())))
    return start


def _starts(s: Session, where: object) -> list[ColdStart]:
    rows = s.scalars(select(ColdStartRow).where(where).order_by(ColdStartRow.id.desc()).limit(KEEP)).all()  # type: ignore[arg-type]
    return [ColdStart(r.began_at, r.ready_at, dict(r.phases or {}), r.kind) for r in reversed(rows)]


def cold_start(s: Session, ep: EndpointRow | None, policy: ReadyBy) -> ColdStartStats:
    """The endpoint's cold-start figures and the lead its ready_by entries fire early by."""
    if ep is not None:
        own = _starts(s, ColdStartRow.endpoint_id == ep.id)
        if own:
            return stats(own, "measured", 0.0, policy.margin_s, policy.window)
        if ep.template is not None:
            same = (
                (ColdStartRow.project_id == ep.project_id)
                & (ColdStartRow.template == ep.template)
                & (ColdStartRow.gpu_type == ep.gpu_type)
            )
            similar = _starts(s, same)
            if similar:
                return stats(similar, "similar", 0.0, policy.margin_s, policy.window)
    return estimate(policy, ep.template if ep is not None else None)


def estimate(policy: ReadyBy, template: str | None) -> ColdStartStats:
    """Before any start was measured: the template's estimate, else the default."""
    if template is not None and template in policy.estimates:
        return stats([], "template", policy.estimates[template], policy.margin_s)
    return stats([], "default", policy.default_s, policy.margin_s)


def spec_for(s: Session, task: TaskRow, policy: ReadyBy) -> tuple[ScheduleSpec, ColdStartStats | None]:
    """The task's schedule with the lead of its endpoint (figures only if it has ready_by entries)."""
    spec = ScheduleSpec.build(task.type, task.timezone, task.schedule, bool(task.ready_by))
    if not spec.ready_by:  # no lead to look up
        return spec, None
    figures = cold_start(s, s.get(EndpointRow, task.endpoint_id), policy)
    return ScheduleSpec(spec.type, spec.timezone, spec.entries, timedelta(seconds=figures.lead_s)), figures
