"""Which control plane runs the loops: the decisions of one candidate for a lease.

Pure: given the lease as read from the store and the candidate's own monotonic clock, what
it does next. No wall clock is compared across processes (they may disagree): as in
Kubernetes' leader election, a standby takes over once it has seen the same
``(epoch, renewals)`` for a whole lease on its own clock, and the leader acts only for the
lease minus one renewal interval after a renewal *began*. A renewal commits after it
began, and a standby starts counting after it saw the commit, so the leader has stopped
acting at least one renewal interval before anyone may take over: room for a PUT that was
already on its way (a PUT waits no longer than the leader may still act). The epoch is the fencing token: whatever the leader records is
checked against it in the same transaction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class Lease:
    """A lease as read from the store; ``holder`` None: its last holder let it go."""

    holder: str | None
    epoch: int
    renewals: int


class Step(Enum):
    CREATE = "create"  # no lease yet: create it, held
    RENEW = "renew"  # it is this candidate's
    TAKE = "take"  # lapsed, let go, or nobody else can hold it: take it (a new epoch)
    WAIT = "wait"  # another holder's, not lapsed on this candidate's clock


@dataclass
class Candidate:
    me: str
    lease_s: float
    renew_s: float
    alone: bool = False  # nobody else can run on this store (SQLite, held by this process): take at once
    epoch: int | None = None  # the epoch it holds, if any
    valid_until: float = float("-inf")  # monotonic: it acts until then
    seen: tuple[int, int] | None = None  # another holder's (epoch, renewals), last seen ...
    seen_at: float = 0.0  # ... first at this monotonic time

    def __post_init__(self) -> None:
        if not 0 < self.renew_s < self.lease_s:
            raise ValueError(f"the renewal interval ({self.renew_s}s) must be shorter than the lease ({self.lease_s}s)")

    def next(self, lease: Lease | None, now: float) -> Step:
        if lease is None:
            return Step.CREATE
        if lease.holder == self.me and lease.epoch == self.epoch:
            return Step.RENEW
        self.lost()  # someone else's now, if it was this candidate's
        if lease.holder is None or self.alone:
            return Step.TAKE
        key = (lease.epoch, lease.renewals)
        if key != self.seen:
            self.seen, self.seen_at = key, now
            return Step.WAIT
        return Step.TAKE if now - self.seen_at >= self.lease_s else Step.WAIT

    def held(self, epoch: int, began: float) -> None:
        """It created, renewed or took the lease with a write that began at ``began``."""
        self.epoch, self.seen = epoch, None
        self.valid_until = began + self.lease_s - self.renew_s

    def lost(self) -> None:
        self.epoch, self.valid_until = None, float("-inf")

    def leading(self, now: float) -> bool:
        """Alone, nobody else can take the lease: a renewal held up (a busy store) does not
        depose it."""
        return self.epoch is not None and (self.alone or now < self.valid_until)

    def left(self, now: float) -> float:
        """How long it may still act without renewing (0: it does not lead)."""
        if not self.leading(now):
            return 0.0
        return math.inf if self.alone else self.valid_until - now


class Solo:
    """What a loop acts under when nothing else can run it (a reconciler on its own, as in
    tests): always held, nothing to fence."""

    epoch: int | None = 0

    def holds(self, epoch: int | None) -> bool:
        return True

    def left(self, epoch: int | None) -> float:
        return math.inf

    def signature(self, epoch: int | None) -> str | None:
        return None

    def fence(self, s: object, epoch: int | None) -> None:
        return None
