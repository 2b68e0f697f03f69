"""``--wait``: follow endpoints until each reaches what its command asked for, with a live
display in a terminal (a spinner, status, phase, time in phase, earlier phases, the latest
event) and one line per change otherwise. Exit 0 when all did, 1 when one failed, 124
when ``--timeout`` passed (everything left as it is)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import typer

from rota.cli.client import Api, Unavailable
from rota.cli.follow import Goal, Verdict, durations, phase_times, since_change, snippet, verdict

TIMED_OUT = 124
INTERRUPTED = 130
POLL_S = 0.5


def wait_option() -> Any:
    return typer.Option(
        None, "--wait/--no-wait", help="follow it until done (default: on in a terminal, off when output is piped)"
    )


def timeout_option() -> Any:
    return typer.Option(1800.0, "--timeout", min=0.0, help="stop waiting after this many seconds: exit 124, nothing undone")


def waiting(wait: bool | None) -> bool:
    return sys.stdout.isatty() if wait is None else wait


@dataclass
class Watch:
    """One endpoint being followed."""

    ref: str  # its id
    name: str
    goal: Goal
    ep: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    last_event: int = 0
    seen: str = ""  # the status/phase shown last
    seen_at: float = field(default_factory=time.monotonic)
    result: Verdict | None = None
    trouble: str = ""

    def poll(self, api: Api) -> None:
        try:
            self.ep = api.call("GET", f"/endpoints/{self.ref}", ok404=True, soft=True)
            params = {"after_id": self.last_event}
            new = api.call("GET", f"/endpoints/{self.ref}/events", ok404=True, soft=True, params=params) or []
        except Unavailable as e:
            self.trouble = f"asking again: {e}"  # a control plane restarting is not the endpoint failing
            return
        self.trouble = ""
        if new:
            self.events = since_change(self.events + new)
            self.last_event = new[-1]["id"]
        now = (self.ep["status"] + (f" / {self.ep['phase']}" if self.ep["phase"] else "")) if self.ep else "TERMINATED"
        if now != self.seen:
            self.seen, self.seen_at = now, time.monotonic()
        self.result = verdict(self.goal, self.ep)

    @property
    def latest(self) -> str:
        return self.trouble or (self.events[-1]["message"] if self.events else "")

    def line(self) -> str:
        return f"endpoint/{self.name}  {self.seen}  ({time.monotonic() - self.seen_at:.0f} s)  {self.latest}".rstrip()


def follow(api: Api, watches: list[Watch], timeout: float) -> int:
    """Follow ``watches`` to their goals; print the outcome; return the exit code."""
    deadline = time.monotonic() + timeout
    try:
        (_follow_live if sys.stdout.isatty() else _follow_plain)(api, watches, deadline)
    except KeyboardInterrupt:
        typer.secho("stopped waiting: everything is left as it is", err=True)
        return INTERRUPTED
    return _report(watches, timeout)


def _pending(watches: list[Watch]) -> list[Watch]:
    return [w for w in watches if w.result is None]


def _follow_plain(api: Api, watches: list[Watch], deadline: float) -> None:
    shown: dict[str, str] = {}
    while True:
        for w in _pending(watches):
            w.poll(api)
            if shown.get(w.ref) != w.seen:
                shown[w.ref] = w.seen
                typer.echo(w.line())
        if not _pending(watches) or time.monotonic() >= deadline:
            return
        time.sleep(POLL_S)


def _follow_live(api: Api, watches: list[Watch], deadline: float) -> None:
    from rich.live import Live

    with Live(_render(watches), refresh_per_second=8, transient=True) as display:
        while True:
            for w in _pending(watches):
                w.poll(api)
            display.update(_render(watches))
            if not _pending(watches) or time.monotonic() >= deadline:
                return
            time.sleep(POLL_S)


def _render(watches: list[Watch]) -> Any:
    from rich.spinner import Spinner
    from rich.table import Table

    t = Table(box=None, pad_edge=False)
    for col in ("", "ENDPOINT", "STATUS / PHASE", "IN PHASE", "EARLIER PHASES", "LATEST EVENT"):
        t.add_column(col, no_wrap=col != "LATEST EVENT")
    for w in watches:
        mark: Any = Spinner("dots") if w.result is None else ("[green]✓" if w.result.ok else "[red]✗")
        since = f"{time.monotonic() - w.seen_at:.0f} s"
        t.add_row(mark, w.name, w.seen or "…", since, durations(phase_times(w.events)), w.latest)
    return t


def _report(watches: list[Watch], timeout: float) -> int:
    code = 0
    ready = []
    for w in watches:
        if w.result is None:
            typer.secho(f"endpoint/{w.name} still {w.seen} after {timeout:g} s: left as it is", err=True, fg="yellow")
            code = code or TIMED_OUT
        elif not w.result.ok:
            typer.secho(f"endpoint/{w.name} {w.result.text}", err=True, fg="red")
            code = 1
        else:
            times = phase_times(w.events)
            took = f" in {sum(s for _, s in times):.1f} s ({durations(times)})" if times else ""
            typer.echo(f"endpoint/{w.name} {w.result.text}{took}")
            if w.ep is not None and w.goal is Goal.READY:
                typer.echo(f"  model (routing key): {w.ep['routing_key']}\n  base URL:            {w.ep['base_url']}")
                ready.append(w.ep)
    if ready and code == 0:
        typer.echo("\n" + snippet(ready[0]["base_url"], ready[0]["routing_key"]))
    return code
