"""Was a ready_by window ready? Pure: one step of a fired early scale-up's watch.

A run fired early is ``pending`` until its written time. The first moment its
``min_replicas`` serve (the endpoint RUNNING with that many replicas) is its ``ready_at``.
At the written time it is ``on_time`` if that moment came, else ``late``; a late one becomes
``ready_late`` when they serve, or ``never`` if the schedule moved on (a later entry's
written time passed) first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

PENDING, ON_TIME, LATE, READY_LATE, NEVER = "pending", "on_time", "late", "ready_late", "never"
OPEN = (PENDING, LATE)


@dataclass(frozen=True)
class Watch:
    state: str
    ready_at: datetime | None
    changed: bool  # the state moved: say so in an event


def step(state: str, ready_at: datetime | None, due: datetime, needed: int, serving: int, now: datetime, moved_on: bool) -> Watch:
    """``due``: the written time; ``serving``: replicas serving now; ``moved_on``: a later
    entry's written time has passed."""
    if ready_at is None and serving >= needed:
        ready_at = now
    new = state
    if state == PENDING and now >= due:
        new = ON_TIME if ready_at is not None and ready_at <= due else LATE
    if new == LATE and ready_at is not None:
        new = READY_LATE
    elif new == LATE and moved_on:
        new = NEVER
    return Watch(new, ready_at, new != state)
