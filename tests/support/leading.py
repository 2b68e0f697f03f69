"""Tests that drive a runtime's loops by hand: the runtime holds the lease, as its own loop
would make it, and its lease clock stands still (no renewal is needed)."""

from __future__ import annotations


def lead(rt, scheduler: bool = True) -> None:
    """``scheduler``: its catch-up runs too (its jobs wait for an APScheduler not started)."""
    rt.leadership.clock = lambda: 0.0
    assert rt.leadership.acquire(), rt.leadership.view()
    if scheduler:
        rt.scheduler.lead()
