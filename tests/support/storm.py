"""A fire storm of daily tasks and the check that each of its fires was applied exactly once
(its events and its runs), for the fault tests that kill control planes during one."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from rota.store.db import Database
from rota.store.tables import RunRow, TaskRow

SPACING_S = 9  # between two entries of a task: more than any downtime, so no fire is superseded by a later one


def daily_storm(
    call: Callable[..., object],
    n_tasks: int,
    window_s: float,
    rng: random.Random,
    lead_s: float = 8,
    spacing_s: int = SPACING_S,
    bounds: Callable[[int], tuple[int, int]] = lambda k: (k % 2, 2),
):
    """``n_tasks`` daily tasks, each with entries ``spacing_s`` apart over ``window_s``
    starting within ``lead_s`` + ``spacing_s`` s, created and activated with
    ``call(method, path, json=...)``; the fires due, and when the last one is. The spacing
    must be longer than any time with no scheduler running: a catch-up applies only the
    latest entry due (the earlier ones are superseded). ``bounds``: entry k's min and max
    replicas."""
    t0 = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=lead_s)
    expected = set()
    for i in range(n_tasks):
        first = t0 + timedelta(seconds=rng.randrange(spacing_s))
        times = [first + timedelta(seconds=k * spacing_s) for k in range(int(window_s // spacing_s))]
        schedule = [
            {"time": at.strftime("%H:%M:%S"), "min_replicas": bounds(k)[0], "max_replicas": bounds(k)[1]}
            for k, at in enumerate(times)
        ]
        body = {"name": f"s{i}", "file_path": "echo", "deployment_name": "app", "type": "daily", "timezone": "UTC"}
        call("POST", "/tasks", json={**body, "schedule": schedule})
        task = call("POST", f"/tasks/s{i}/activate")
        # An entry already past when the task was activated does not fire today (creating
        # many tasks on a busy machine can outrun the lead).
        since = datetime.fromisoformat(task["activated_at"])  # type: ignore[index]
        expected |= {(f"s{i}", at) for at in times if at > since}
    end = t0 + timedelta(seconds=window_s)
    return {k for k in expected if k[1] <= end}, end


def all_events(get: Callable[..., list[dict]]) -> list[dict]:
    events: list[dict] = []
    after = 0
    while page := get("/events", params={"after_id": after, "limit": 10000}):
        events += page
        after = page[-1]["id"]
    return events


def not_applied_once(due: set, events: list[dict], url: str) -> dict[str, list]:
    """The fires of ``due`` not applied exactly once, by their events and by the store's
    runs (empty lists: all good)."""
    applied = Counter(
        (e["task_name"], datetime.fromisoformat(e["data"]["scheduled_at"])) for e in events if e["kind"] in ("fired", "caught_up")
    )
    db = Database(url)
    try:
        with db.session() as s:
            names = dict(s.execute(select(TaskRow.id, TaskRow.name)).all())
            runs = Counter((names[r.task_id], r.scheduled_at) for r in s.scalars(select(RunRow)).all())
    finally:
        db.dispose()
    return {
        "events": sorted(k for k in due if applied[k] != 1),
        "runs": sorted(k for k in due if runs[k] != 1),
        "skipped": [e for e in events if e["kind"] == "caught_up" and e["data"].get("skipped", 0)],
    }
