"""Measured cold starts, kept per endpoint, and the lead of a task's ``ready_by`` entries.

A start is measured when an endpoint turns RUNNING (``note_status``, called where every
status change is recorded) from its own STATUS events; the last ``KEEP`` are kept. The
figures are over the last ``window`` wakes (scale-ups from zero, what a schedule does) or,
with none yet, deploys. An endpoint with none measured borrows those of the project's
endpoints of the same template and GPU type, then its template's estimate, then the
stated default.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from rota.catalog import Catalog
from rota.config import Settings
from rota.domain.coldstart import RUNNING, Change, ColdStart, ColdStartStats, measure, stats
from rota.domain.events import EventKind
from rota.domain.schedule import ScheduleSpec
from rota.store.tables import ColdStartRow, EndpointRow, EventRow, TaskRow

log = logging.getLogger(__name__)

KEEP = 50  # starts kept per endpoint
LOOK_BACK = 64  # status events read to find where a start began


@dataclass(frozen=True)
class ReadyBy:
    """How early ``ready_by`` fires: the p95 of the last ``window`` starts plus ``margin_s``;
    before any start was measured, the template's estimate or ``default_s``."""

    margin_s: float = 30.0
    default_s: float = 300.0
    max_lead_s: float = 3600.0  # a start stuck for hours must not keep an endpoint up all night
    window: int = 20
    estimates: Mapping[str, float] = field(default_factory=dict)  # template -> its estimated cold start (s)

    @classmethod
    def of(cls, settings: Settings, catalog: Catalog) -> ReadyBy:
        estimates = {t.name: t.cold_start_s for t in catalog.templates if t.cold_start_s is not None}
        return cls(settings.ready_by_margin_s, settings.cold_start_default_s, settings.ready_by_max_lead_s, estimates=estimates)


def note_status(s: Session, ep: EndpointRow, before: str | None, after: str, at: datetime) -> ColdStart | None:
    """Record the cold start that ``ep`` turning RUNNING (at ``at``) ends, if it ends one.
    Call after the status event is added: it is read back with the ones before it."""
    if after != RUNNING or before == RUNNING:
        return None
    try:  # a figure is not worth a status: reading it back never fails the reconciler's tick
        rows = s.execute(
            select(EventRow.at, EventRow.data)
            .where(EventRow.endpoint_id == ep.id, EventRow.kind == EventKind.STATUS.value)
            .order_by(EventRow.id.desc())
            .limit(LOOK_BACK)
        ).all()
        changes = [Change(r.at, (r.data or {}).get("to", ""), (r.data or {}).get("phase")) for r in reversed(rows)]
        since_created = len(rows) < LOOK_BACK
        if since_created and rows:  # the status it was created with, before its first change
            changes.insert(0, Change(ep.created_at, (rows[-1].data or {}).get("from", "")))
        start = measure(changes, since_created)
    except Exception:
        log.exception("measuring the cold start of endpoint %s failed", ep.id)
        return None
    if start is None:
        return None
    kept = select(ColdStartRow.id).where(ColdStartRow.endpoint_id == ep.id).order_by(ColdStartRow.id.desc()).limit(KEEP - 1)
    s.execute(delete(ColdStartRow).where(ColdStartRow.endpoint_id == ep.id, ColdStartRow.id.not_in(kept.scalar_subquery())))
    phases = {k: round(v, 3) for k, v in start.phases.items()}
    s.add(
        ColdStartRow(
            project_id=ep.project_id,
            endpoint_id=ep.id,
            template=ep.template,
            gpu_type=ep.gpu_type,
            began_at=start.began_at,
            ready_at=start.ready_at,
            phases=phases,
            kind=start.kind,
        )
    )
    return start


def _starts(s: Session, where: Any, by: Any) -> dict[Any, list[ColdStart]]:
    """The last ``KEEP`` starts (oldest first) of each group ``by`` among the rows ``where``."""
    rank = func.row_number().over(partition_by=by, order_by=ColdStartRow.id.desc()).label("rank")
    ranked = select(ColdStartRow.id, rank).where(where).subquery()
    rows = s.scalars(
        select(ColdStartRow).join(ranked, ranked.c.id == ColdStartRow.id).where(ranked.c.rank <= KEEP).order_by(ColdStartRow.id)
    )
    out: dict[Any, list[ColdStart]] = {}
    for r in rows:
        key = r.endpoint_id if by is ColdStartRow.endpoint_id else (r.template, r.gpu_type)
        out.setdefault(key, []).append(ColdStart(r.began_at, r.ready_at, dict(r.phases or {}), r.kind))
    return out


def cold_starts(s: Session, eps: Sequence[EndpointRow], policy: ReadyBy) -> dict[int, ColdStartStats]:
    """Each endpoint's cold-start figures and the lead its ready_by entries fire early by: its
    own starts, else its project's endpoints' of the same template and GPU type, else the
    template's estimate or the default (a few queries for any number of endpoints)."""
    out: dict[int, ColdStartStats] = {}
    own = _starts(s, ColdStartRow.endpoint_id.in_([e.id for e in eps]), ColdStartRow.endpoint_id) if eps else {}
    for ep in eps:
        if ep.id in own:
            out[ep.id] = stats(own[ep.id], "measured", 0.0, policy.margin_s, policy.window, policy.max_lead_s)
    for project_id in {e.project_id for e in eps if e.id not in out and e.template is not None}:
        kinds = {(e.template, e.gpu_type) for e in eps if e.project_id == project_id and e.id not in out}
        same = (ColdStartRow.project_id == project_id) & ColdStartRow.template.in_([k[0] for k in kinds])
        similar = _starts(s, same, (ColdStartRow.template, ColdStartRow.gpu_type))
        for ep in eps:
            if ep.project_id == project_id and ep.id not in out and (ep.template, ep.gpu_type) in similar:
                starts = similar[(ep.template, ep.gpu_type)]
                out[ep.id] = stats(starts, "similar", 0.0, policy.margin_s, policy.window, policy.max_lead_s)
    return {e.id: out.get(e.id) or estimate(policy, e.template) for e in eps}


def cold_start(s: Session, ep: EndpointRow | None, policy: ReadyBy) -> ColdStartStats:
    """One endpoint's figures (``cold_starts``); with no endpoint, the default."""
    return cold_starts(s, [ep], policy)[ep.id] if ep is not None else estimate(policy, None)


def estimate(policy: ReadyBy, template: str | None) -> ColdStartStats:
    """Before any start was measured: the template's estimate, else the default."""
    if template is not None and template in policy.estimates:
        return stats([], "template", policy.estimates[template], policy.margin_s, max_lead_s=policy.max_lead_s)
    return stats([], "default", policy.default_s, policy.margin_s, max_lead_s=policy.max_lead_s)


def spec_for(s: Session, task: TaskRow, policy: ReadyBy) -> tuple[ScheduleSpec, ColdStartStats | None]:
    """The task's schedule with the lead of its endpoint (figures only if it has ready_by entries)."""
    spec = ScheduleSpec.build(task.type, task.timezone, task.schedule, bool(task.ready_by))
    if not spec.ready_by:  # no lead to look up
        return spec, None
    figures = cold_start(s, s.get(EndpointRow, task.endpoint_id), policy)
    return ScheduleSpec(spec.type, spec.timezone, spec.entries, timedelta(seconds=figures.lead_s)), figures
