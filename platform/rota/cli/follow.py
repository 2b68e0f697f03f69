"""What ``--wait`` decides, without I/O: whether an endpoint reached what a command
asked for, how long each phase took (from its status events), and what to print."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

# The events a user's command (or a task's fire) records: a wait counts from the last one.
CHANGES = frozenset({"created", "updated", "start", "stop", "scheduled", "deleted"})


class Goal(str, Enum):
    READY = "ready"  # running, asleep (wakes on a request) or pending its task's first fire
    STOPPED = "stopped"
    GONE = "gone"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    text: str


def verdict(goal: Goal, ep: dict[str, Any] | None) -> Verdict | None:
    """Where ``ep`` (the API's answer; None once deleted) stands against ``goal``; None:
    keep waiting. A status counts only once the endpoint has converged (Ray Serve runs its
    latest settings), so a FAILED left by an older model is not this change's outcome."""
    if ep is None:
        return Verdict(True, "deleted") if goal is Goal.GONE else Verdict(False, "deleted meanwhile")
    if goal is Goal.GONE:
        return None
    wanted = "stopped" if goal is Goal.STOPPED else "running"
    if ep["desired"] != wanted:
        return Verdict(False, f"is to be {ep['desired']}, not {wanted}: it will not get there")
    if not ep["converged"]:
        return None
    status, code = ep["status"], ep.get("error_code")
    if goal is Goal.STOPPED:
        return Verdict(True, "STOPPED") if status == "STOPPED" else None
    if status == "FAILED" or (status == "RUNNING" and code):
        what = "FAILED" if status == "FAILED" else "the new settings failed (the previous replicas still serve)"
        return Verdict(False, f"{what}: {code}: {ep.get('message') or 'no message'}")
    if status == "RUNNING" and ep["replicas"]["running"] < (ep["replicas"]["min"] or 0):
        return None  # serving, but not yet at the size it was asked for
    return {
        "RUNNING": Verdict(True, "READY"),
        "SLEEPING": Verdict(True, "SLEEPING: deployed, scaled to zero; the first request wakes it"),
        "PENDING": Verdict(True, "PENDING: its task's first fire starts it"),
    }.get(status)


def label(status: str, phase: str | None) -> str:
    return phase if phase and status != "RUNNING" else "READY" if status == "RUNNING" else status


def phase_times(events: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """(phase, seconds) for each phase the endpoint went through and left, from its status
    events in order (the current phase is not over: it is not listed)."""
    out: list[tuple[str, float]] = []
    prev: tuple[str, datetime] | None = None
    for e in events:
        if e["kind"] != "status":
            continue
        at = parse_time(e["at"])
        if prev is not None:
            out.append((prev[0], (at - prev[1]).total_seconds()))
        prev = (label(e["data"].get("to", ""), e["data"].get("phase")), at)
    return out


def parse_time(value: Any) -> datetime:
    """An API timestamp (``...Z`` included: Python 3.10's parser does not take it)."""
    text = str(value)
    return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)


def since_change(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events from the last change a command (or a fire) made on."""
    starts = [i for i, e in enumerate(events) if e["kind"] in CHANGES]
    return events[starts[-1] :] if starts else events


def durations(times: list[tuple[str, float]]) -> str:
    return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in times)


def snippet(base_url: str, routing_key: str) -> str:
    """A ready-to-paste call with the official ``openai`` client."""
    return (
        "from openai import OpenAI\n"
        f'client = OpenAI(base_url="{base_url}", api_key="<your Rota API key>")\n'
        f'r = client.chat.completions.create(model="{routing_key}", messages=[{{"role": "user", "content": "Hello!"}}])\n'
        "print(r.choices[0].message.content)"
    )
