"""``rota tasks``: inspect and drive schedules."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import typer

from rota.cli import output
from rota.cli.client import Api, api, fail, object_commands, ref_argument
from rota.cli.follow import Goal, parse_time
from rota.cli.output import Output
from rota.cli.wait import TIMED_OUT, Watch, follow, timeout_option, wait_option, waiting

app = typer.Typer(help="Inspect and drive tasks (schedules over endpoints).", no_args_is_help=True)
object_commands(app, "tasks", "Show a task.")


def _rows(page: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [
        ("ID", "NAME", "TYPE", "STATUS", "ENDPOINT", "ENDPOINT STATUS", "REPLICAS", "NEXT FIRE (UTC)", "NEXT FIRE (LOCAL)")
    ]
    for t in page["items"]:
        e = t["endpoint"] or {"name": "(gone)", "status": "-", "replicas": {"min": None}}
        r = e["replicas"]
        reps = f"{r['running']} ({r['min']}..{r['max']})" if r["min"] is not None else "-"
        own = " (own)" if t["owns_endpoint"] else ""
        nxt = (t["next_fire_at"] or "-", t["next_fire_local"] or "-")
        rows.append((str(t["id"]), t["name"], t["type"], t["status"], e["name"] + own, e["status"], reps, *nxt))
    return rows


@app.command("list")
def tasks_list(
    ctx: typer.Context,
    search: str | None = typer.Option(None, help="substring of the name"),
    status: str | None = typer.Option(None, help="idle | active | completed | missed"),
    type: str | None = typer.Option(None, "--type", help="one_off | daily"),
    fmt: Output = output.option(),
) -> None:
    """List tasks, with the endpoint each drives and its status."""
    params = {k: v for k, v in {"search": search, "status": status, "type": type, "limit": 1000}.items() if v}
    output.show(api(ctx).call("GET", "/tasks", params=params), fmt, _rows)


@app.command("activate")
def tasks_activate(
    ctx: typer.Context, task: str = ref_argument("tasks"), wait: bool | None = wait_option(), timeout: float = timeout_option()
) -> None:
    """Activate a task: its fires are scheduled. With --wait, when its next fire falls
    within --timeout: wait for it, then follow its endpoint until it serves."""
    client, deadline = api(ctx), time.monotonic() + timeout
    t = client.call("POST", f"/tasks/{task}/activate")
    nxt = f"next fire {t['next_fire_at']} UTC ({t['next_fire_local']})" if t["next_fire_at"] else "no next fire"
    typer.echo(f"task/{t['name']} {t['status']}; {nxt}")
    if not waiting(wait) or not t["next_fire_at"]:
        return
    due = parse_time(t["next_fire_at"])
    left = (due - datetime.now(timezone.utc)).total_seconds()
    if left > timeout:
        typer.echo(f"task/{t['name']}: its next fire is in {left:.0f} s, beyond --timeout: not waiting for it")
        return
    typer.echo(f"task/{t['name']}: waiting for its fire in {max(left, 0):.0f} s")
    t = _fired(client, t, due, deadline)
    if t is None:
        typer.secho(f"task/{task}: no fire within {timeout:g} s", err=True, fg="yellow")
        raise typer.Exit(TIMED_OUT)
    run = t["last_run"]
    typer.echo(f"task/{t['name']} fired ({run['trigger']}): replicas {run['min_replicas']}..{run['max_replicas']}")
    if t["endpoint"] is not None:
        watch = Watch(str(t["endpoint"]["id"]), t["endpoint"]["name"], Goal.READY)
        raise typer.Exit(follow(client, [watch], max(0.0, deadline - time.monotonic())))


def _fired(client: Api, t: dict[str, Any], due: datetime, deadline: float) -> dict[str, Any] | None:
    """The task once the fire at ``due`` ran (None when ``deadline`` passed first)."""
    while time.monotonic() < deadline:
        t = client.call("GET", f"/tasks/{t['id']}")
        run = t["last_run"]
        if run and parse_time(run["scheduled_at"]) >= due:
            return t
        if t["status"] not in ("active", "completed"):
            fail(f"task/{t['name']} is {t['status']} ({t['status_reason'] or 'no reason given'}): it will not fire")
        time.sleep(0.5)
    return None


@app.command("deactivate")
def tasks_deactivate(ctx: typer.Context, task: str = ref_argument("tasks")) -> None:
    """Deactivate a task: no more fires (its endpoint keeps its replicas)."""
    t = api(ctx).call("POST", f"/tasks/{task}/deactivate")
    typer.echo(f"task/{t['name']} {t['status']}")


@app.command("delete")
def tasks_delete(ctx: typer.Context, task: str = ref_argument("tasks")) -> None:
    """Delete a task (and its own application, if it has one)."""
    api(ctx).call("DELETE", f"/tasks/{task}")
    typer.echo(f"task/{task} deleted")
