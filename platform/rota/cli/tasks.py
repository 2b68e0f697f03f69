"""``rota tasks``: inspect and drive schedules."""

from __future__ import annotations

import typer

from rota.cli.client import api, follow_events, print_json, table

app = typer.Typer(help="Inspect and drive tasks (schedules over endpoints).", no_args_is_help=True)


@app.command("list")
def tasks_list(
    ctx: typer.Context,
    search: str | None = typer.Option(None, help="substring of the name"),
    status: str | None = typer.Option(None, help="idle | active | completed | missed"),
    type: str | None = typer.Option(None, "--type", help="one_off | daily"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """List tasks, with the endpoint each drives and its status."""
    params = {k: v for k, v in {"search": search, "status": status, "type": type, "limit": 1000}.items() if v}
    page = api(ctx).call("GET", "/tasks", params=params)
    if as_json:
        return print_json(page)
    rows = [("ID", "NAME", "TYPE", "STATUS", "ENDPOINT", "ENDPOINT STATUS", "REPLICAS", "NEXT FIRE (UTC)", "NEXT FIRE (LOCAL)")]
    for t in page["items"]:
        e, r = t["endpoint"], t["endpoint"]["replicas"]
        reps = f"{r['running']} ({r['min']}..{r['max']})" if r["min"] is not None else "-"
        rows.append(
            (
                str(t["id"]),
                t["name"],
                t["type"],
                t["status"],
                e["name"] + (" (own)" if t["owns_endpoint"] else ""),
                e["status"],
                reps,
                t["next_fire_at"] or "-",
                t["next_fire_local"] or "-",
            )
        )
    table(rows)


@app.command("get")
def tasks_get(ctx: typer.Context, task: str = typer.Argument(..., help="id or name")) -> None:
    """Show a task (JSON)."""
    print_json(api(ctx).call("GET", f"/tasks/{task}"))


@app.command("activate")
def tasks_activate(ctx: typer.Context, task: str = typer.Argument(..., help="id or name")) -> None:
    """Activate a task: its fires are scheduled."""
    t = api(ctx).call("POST", f"/tasks/{task}/activate")
    typer.echo(f"task/{t['name']} {t['status']}; next fire {t['next_fire_at']} UTC ({t['next_fire_local']})")


@app.command("deactivate")
def tasks_deactivate(ctx: typer.Context, task: str = typer.Argument(..., help="id or name")) -> None:
    """Deactivate a task: no more fires (its endpoint keeps its replicas)."""
    typer.echo(f"task/{api(ctx).call('POST', f'/tasks/{task}/deactivate')['name']} idle")


@app.command("delete")
def tasks_delete(ctx: typer.Context, task: str = typer.Argument(..., help="id or name")) -> None:
    """Delete a task (and its own application, if it has one)."""
    api(ctx).call("DELETE", f"/tasks/{task}")
    typer.echo(f"task/{task} deleted")


@app.command("events")
def tasks_events(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="id or name"),
    follow: bool = typer.Option(False, "--follow", "-F", help="keep printing new events"),
) -> None:
    """Print a task's events in order."""
    follow_events(api(ctx), f"/tasks/{task}/events", follow)
