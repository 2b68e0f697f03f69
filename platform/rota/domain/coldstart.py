"""Cold starts: how long an endpoint takes from "start" to serving, measured from its own
status changes, and the lead a ``ready_by`` entry fires early by. Pure.

A cold start begins when an endpoint with nothing serving (PENDING, SLEEPING, STOPPED,
FAILED) starts replicas (INITIALIZING, AWAKING, UPDATING) and ends when it is RUNNING
(Ray Serve healthy and its route served). Each phase it went through (requesting
resources, downloading the model, engine initialising, waiting for the route) gets the
time spent in it. A start that ends anywhere but RUNNING is not a cold start.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, Field

from rota.domain.status import EndpointStatus

STARTING = {s.value for s in EndpointStatus.starting()}
IDLE = {s.value for s in (EndpointStatus.PENDING, EndpointStatus.SLEEPING, EndpointStatus.STOPPED, EndpointStatus.FAILED)}
RUNNING = EndpointStatus.RUNNING.value


@dataclass(frozen=True)
class Change:
    """One status change of an endpoint, as its STATUS event recorded it."""

    at: datetime
    status: str
    phase: str | None = None


WAKE, DEPLOY = "wake", "deploy"


@dataclass(frozen=True)
class ColdStart:
    began_at: datetime
    ready_at: datetime
    phases: dict[str, float] = field(default_factory=dict)  # phase -> seconds spent in it
    kind: str = DEPLOY  # wake: from SLEEPING (the application stays deployed); deploy: from nothing

    @property
    def seconds(self) -> float:
        return (self.ready_at - self.began_at).total_seconds()


def measure(changes: Sequence[Change], since_created: bool = False) -> ColdStart | None:
    """The cold start that the last change (a move to RUNNING) ends, if it ends one.

    ``changes`` are in time order; only the tail after the last idle status matters.
    ``since_created``: the first is the status the endpoint was created with (a start that
    goes back to it began at the creation)."""
    if not changes or changes[-1].status != RUNNING:
        return None
    i = len(changes) - 1
    while i > 0 and changes[i - 1].status in STARTING:
        i -= 1
    if i == len(changes) - 1 or changes[i].status not in STARTING:
        return None  # no start before it
    if (i == 0 and not since_created) or (i > 0 and changes[i - 1].status not in IDLE):
        return None  # the start's beginning is not in view, or it is a roll of a serving endpoint
    phases: dict[str, float] = {}
    for a, b in zip(changes[i:-1], changes[i + 1 :], strict=True):
        name = a.phase or a.status
        phases[name] = phases.get(name, 0.0) + (b.at - a.at).total_seconds()
    # A wake: from asleep, replicas come back (AWAKING); a roll while asleep (UPDATING) deploys.
    asleep = i > 0 and changes[i - 1].status == EndpointStatus.SLEEPING.value
    kind = WAKE if asleep and changes[i].status == EndpointStatus.AWAKING.value else DEPLOY
    return ColdStart(changes[i].at, changes[-1].at, phases, kind)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


class PhaseStats(BaseModel):
    p50_s: float
    p95_s: float


class ColdStartStats(BaseModel):
    """An endpoint's measured cold starts (the last ``count``), and what ``ready_by`` uses."""

    count: int = Field(description="how many starts the figures come from")
    p50_s: float | None = None
    p95_s: float | None = None
    phases: dict[str, PhaseStats] = Field(default_factory=dict, description="per start phase")
    source: str = Field(description="measured (this endpoint), similar (same template and GPU type), template or default")
    kind: str | None = Field(None, description="the starts measured: wake (from asleep, what a schedule's scale-up is) or deploy")
    lead_s: float = Field(description="how early a ready_by scale-up fires: the p95 (or estimate) plus the margin")


def stats(
    starts: Sequence[ColdStart], source: str, estimate_s: float, margin_s: float, window: int = 20, max_lead_s: float = 3600.0
) -> ColdStartStats:
    """Figures over the last ``window`` of ``starts`` (newest last): of their wakes if any (a
    schedule's scale-up from zero is one), else of all; with none, the lead is ``estimate_s``.
    The lead (+ ``margin_s``) is at most ``max_lead_s``."""
    wakes = [c for c in starts if c.kind == WAKE]
    starts = (wakes or starts)[-window:]
    if not starts:
        return ColdStartStats(count=0, source=source, lead_s=round(min(estimate_s + margin_s, max_lead_s), 1))
    totals = [c.seconds for c in starts]
    names = list(dict.fromkeys(n for c in starts for n in c.phases))  # in the order phases come
    per = {
        n: PhaseStats(p50_s=round(percentile(v, 50), 1), p95_s=round(percentile(v, 95), 1))
        for n in names
        if (v := [c.phases.get(n, 0.0) for c in starts])
    }
    p95 = percentile(totals, 95)
    return ColdStartStats(
        count=len(starts),
        p50_s=round(percentile(totals, 50), 1),
        p95_s=round(p95, 1),
        phases=per,
        source=source,
        kind=WAKE if wakes else DEPLOY,
        lead_s=round(min(p95 + margin_s, max_lead_s), 1),
    )


def duration(seconds: float) -> str:
    """7 m 20 s, 45 s, 1 h 2 m."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} m {s % 60} s" if s % 60 else f"{s // 60} m"
    return f"{s // 3600} h {s % 3600 // 60} m"


def early_note(starts: datetime, ready_by: datetime, replicas: int, zone: str, figures: ColdStartStats) -> str:
    """'starts 07:52:10 so that 2 replicas are ready by 08:00 Europe/Paris; p95 cold start
    7 m 20 s over 12 starts' (``starts`` and ``ready_by`` in the task's local time)."""
    what = f"{replicas} replica{'s are' if replicas != 1 else ' is'}"
    by = f"{ready_by:%H:%M}" + (f":{ready_by:%S}" if ready_by.second else "")
    if figures.count and figures.p95_s is not None:
        basis = f"p95 cold start {duration(figures.p95_s)} over {figures.count} start{'s' if figures.count != 1 else ''}"
        if figures.source == "similar":
            basis += " of endpoints with the same template and GPU type"
        margin = figures.lead_s - figures.p95_s
    else:
        margin = 0.0
        basis = f"{'its template' if figures.source == 'template' else 'the default'} estimate {duration(figures.lead_s)} (no start measured yet)"
    tail = f" + {duration(margin)} margin" if margin > 0 else ""
    return f"starts {starts:%H:%M:%S} so that {what} ready by {by} {zone}; {basis}{tail}"
